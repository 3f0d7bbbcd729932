"""Media for a long recording: one decoding pass for every utterance window, vs decoding each window alone.

    python -m benchmarks.long_media [--minutes 10] [--windows 150] [--frames 8]

A generated 1280x720 recording (30 fps, moving texture, x264 veryfast: B-frames, CABAC and the
default 250-frame GOP; kept in runs/long-media/ for reuse, since encoding it takes minutes) with N utterance windows of
1.5-4.5 s, in order, with gaps. Each measure runs in a fresh process on a fresh name of the
file (nothing cached), exact frame times:

- decode everything: every frame decoded to RGB once (the baseline);
- shared pass: the media stage as evaluate and dialogue run it (`shared_windows`, then
  `load_media` per utterance, frames handed on and dropped), with its peak RSS;
- per-utterance seeking: `load_media` per utterance with no plan (each window demuxes the
  file and decodes its run-up from the governing keyframe).
"""
from __future__ import annotations

import multiprocessing
import os
import random
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path

from mllm_mer.config import option

from .common import bench_main


@dataclass
class LongMediaOptions:
    """The recording and its windows."""

    minutes: float = option(10.0, "length of the generated recording")
    windows: int = option(150, "utterance windows")
    frames: int = option(8, "frames sampled per window")
    folder: str = option("runs/long-media", "where the generated recording is kept")


@dataclass
class LongMediaConfig:
    bench: LongMediaOptions = field(default_factory=LongMediaOptions)


def recording(folder: str, minutes: float) -> Path:
    from mllm_mer.media.synth import write_clip

    path = Path(folder) / f"episode-{minutes:g}min-720p-gop250-veryfast-crf28.mp4"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial.mp4")
        # x264's defaults as a camera or an editor would leave them: B-frames, CABAC, a 250-frame GOP
        # (veryfast keeps them and encodes in minutes), at a broadcast-like bitrate.
        write_clip(partial, seconds=minutes * 60, fps=30, size=(1280, 720), texture=True, audio=False, gop=250,
                   preset="veryfast", crf=28)
        partial.rename(path)
    return path


def utterance_windows(seconds: float, n: int, seed: int = 0) -> list[tuple[float, float]]:
    rng = random.Random(seed)
    slot = seconds / n
    found = []
    for i in range(n):
        length = min(rng.uniform(1.5, 4.5), slot * 0.95)
        start = i * slot + rng.uniform(0, slot - length)
        found.append((round(start, 3), round(start + length, 3)))
    return found


def _fresh_name(path: Path, tag: str) -> Path:
    link = path.with_name(f"{path.stem}-{tag}-{time.time_ns()}{path.suffix}")
    os.link(path, link)
    return link


def _measure(kind: str, path: str, windows: list, frames: int, out) -> None:
    """In a child process: time one way of reading the windows; send (seconds, peak RSS in MiB)."""
    from mllm_mer.media import load_media
    from mllm_mer.media.video import decode_all
    from mllm_mer.media.windows import shared_windows
    from mllm_mer.types import MediaSettings, Sample

    settings = MediaSettings(max_frames=frames, keyframe_snap=0.0, vocal_cues=False)
    samples = [Sample(id=f"u{i}", transcript="...", video=path, start=s, end=e) for i, (s, e) in enumerate(windows)]
    start = time.perf_counter()
    if kind == "everything":
        decode_all(path)
    elif kind == "shared":
        with shared_windows(samples, settings):
            got = sum(len(load_media(s, settings).frames) for s in samples)
        assert got == frames * len(samples), got
    else:
        got = sum(len(load_media(s, settings).frames) for s in samples)
        assert got == frames * len(samples), got
    elapsed = time.perf_counter() - start
    out.send((elapsed, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def measure(kind: str, path: Path, windows: list, frames: int) -> tuple[float, float]:
    link = _fresh_name(path, kind)
    try:
        ctx = multiprocessing.get_context("spawn")
        receive, send = ctx.Pipe(duplex=False)
        child = ctx.Process(target=_measure, args=(kind, str(link), windows, frames, send))
        child.start()
        result = receive.recv()
        child.join()
        return result
    finally:
        link.unlink()


def run(minutes: float = 10.0, windows: int = 150, frames: int = 8, folder: str = "runs/long-media") -> dict:
    started = time.perf_counter()
    path = recording(folder, minutes)
    made = time.perf_counter() - started
    spans = utterance_windows(minutes * 60, windows)
    found = {"minutes": minutes, "windows": windows, "frames": frames, "generate_s": made}
    for kind in ("everything", "shared", "per_window"):
        found[f"{kind}_s"], found[f"{kind}_rss_mib"] = measure(kind, path, spans, frames)
    found["shared_vs_everything"] = found["shared_s"] / found["everything_s"]
    found["per_window_vs_shared"] = found["per_window_s"] / found["shared_s"]
    return found


def report(r: dict) -> str:
    return (f"long recording ({r['minutes']:g} min 1280x720, 250-frame GOP, {r['windows']} windows x {r['frames']} "
            f"frames, exact times): decode everything {r['everything_s']:.1f} s, shared pass {r['shared_s']:.1f} s "
            f"({r['shared_vs_everything']:.2f}x decode-everything; peak RSS {r['shared_rss_mib']:.0f} MiB), "
            f"per-utterance seeking {r['per_window_s']:.1f} s ({r['per_window_vs_shared']:.1f}x the shared pass)")


def main(argv: list[str] | None = None) -> dict:
    return bench_main(LongMediaConfig, __doc__, run, report, argv)


if __name__ == "__main__":
    main()
