"""Media for a long recording: one decoding pass for every utterance window, vs decoding each window alone.

    python -m benchmarks.long_media [--minutes 10] [--windows 150] [--frames 8]

A generated 1280x720 recording (30 fps, moving texture, x264 veryfast: B-frames, CABAC and the
default 250-frame GOP; kept in runs/long-media/ for reuse, since encoding it takes minutes) with N utterance windows of
1.5-4.5 s, in order, with gaps. Each measure runs in a fresh process on a fresh name of the
file (nothing cached), in exact mode (`--keyframe-snap 0`) and in the default approximate mode:

- decode everything: every frame decoded to RGB once (the baseline);
- shared pass: the media stage as evaluate and dialogue run it (`shared_windows`, then
  `load_media` per utterance, frames handed on and dropped), with its peak RSS;
- per-utterance seeking: `load_media` per utterance with no plan (each window demuxes the
  file and decodes its run-up from the governing keyframe).

Both ways must decode every reference frame from a GOP's keyframe up to the last time sampled in
it; the work each way has (frames in those runs) is printed too: the ratio of the two is the most
the shared pass can save on decoding. Per-utterance seeking also pays for opening the file.

It also prints how far the approximate mode's frames (deblocking skipped) are from the exact
ones at the same times: the lowest PSNR over the frames of the first windows.
"""
from __future__ import annotations

import multiprocessing
import os
import random
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mllm_mer.config import Section, option
from mllm_mer.core.types import MediaSettings, Sample

from .common import bench_main


@dataclass
class LongMediaOptions(Section):
    """The recording and its windows."""

    minutes: float = option(10.0, "length of the generated recording")
    windows: int = option(150, "utterance windows")
    frames: int = option(8, "frames sampled per window")
    folder: str = option("runs/long-media", "where the generated recording is kept")


@dataclass
class LongMediaConfig:
    bench: LongMediaOptions = field(default_factory=LongMediaOptions)


def recording(folder: str, minutes: float) -> Path:
    from mllm_mer.synthetic.media import write_clip

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


MODES = {"exact": 0.0, "approximate": MediaSettings().keyframe_snap}


def _settings(mode: str, frames: int) -> MediaSettings:
    return MediaSettings(max_frames=frames, keyframe_snap=MODES[mode], vocal_cues=False)


def _measure(kind: str, mode: str, path: str, windows: list, frames: int, out) -> None:
    """In a child process: time one way of reading the windows; send (seconds, peak RSS in MiB)."""
    from mllm_mer.media import load_media
    from mllm_mer.media.decode import decode_all
    from mllm_mer.media.windows import shared_windows

    settings = _settings(mode, frames)
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


def measure(kind: str, mode: str, path: Path, windows: list, frames: int) -> tuple[float, float]:
    link = _fresh_name(path, f"{kind}-{mode}")
    try:
        ctx = multiprocessing.get_context("spawn")
        receive, send = ctx.Pipe(duplex=False)
        child = ctx.Process(target=_measure, args=(kind, mode, str(link), windows, frames, send))
        child.start()
        result = receive.recv()
        child.join()
        return result
    finally:
        link.unlink()


def approximate_psnr(path: Path, windows: list, frames: int) -> float:
    """The lowest PSNR (dB) of an approximate-mode frame against the exact frame of the same time."""
    from mllm_mer.media.decode import sample_window
    from mllm_mer.media.windows import decode_windows

    def decoded(mode):
        settings = _settings(mode, frames)
        spans = [sample_window(Sample(id="w", video=str(path), start=s, end=e), settings) for s, e in windows]
        return {t: np.asarray(image, dtype=float) for _, got in decode_windows(str(path), spans, settings.max_pixels)
                for image, t in zip(got.images, got.times, strict=True)}

    exact, approximate = decoded("exact"), decoded("approximate")
    errors = [((approximate[t] - exact[t]) ** 2).mean() for t in approximate if t in exact]
    return min(10 * np.log10(255 ** 2 / e) if e else np.inf for e in errors)


def decoding_work(path: Path, windows: list, frames: int, mode: str) -> tuple[int, int]:
    """(frames per-utterance seeking decodes, frames the shared pass decodes), counting every frame from
    a GOP's keyframe to the last time sampled in it (reference frames cannot be skipped; the few others
    are left in)."""
    from mllm_mer.media.decode import governing_keyframe, open_video, window_targets

    container, _, info = open_video(str(path))
    container.close()
    keyframes, rate = list(info.keyframes), info.rate
    per_window, union = 0.0, {}
    for start, end in windows:
        last: dict[float, float] = {}
        for t in window_targets(str(path), info, frames, None, start, end, MODES[mode]):
            key = governing_keyframe(keyframes, t, rate)
            last[key] = max(last.get(key, key), t)
        per_window += sum((t - key) * rate + 1 for key, t in last.items())
        for key, t in last.items():
            union[key] = max(union.get(key, key), t)
    return round(per_window), round(sum((t - key) * rate + 1 for key, t in union.items()))


def run(minutes: float = 10.0, windows: int = 150, frames: int = 8, folder: str = "runs/long-media") -> dict:
    started = time.perf_counter()
    path = recording(folder, minutes)
    made = time.perf_counter() - started
    spans = utterance_windows(minutes * 60, windows)
    found = {"minutes": minutes, "windows": windows, "frames": frames, "generate_s": made}
    found["everything_s"], found["everything_rss_mib"] = measure("everything", "exact", path, spans, frames)
    for mode in MODES:
        for kind in ("shared", "per_window"):
            found[f"{mode}_{kind}_s"], found[f"{mode}_{kind}_rss_mib"] = measure(kind, mode, path, spans, frames)
        found[f"{mode}_shared_vs_everything"] = found[f"{mode}_shared_s"] / found["everything_s"]
        found[f"{mode}_per_window_vs_shared"] = found[f"{mode}_per_window_s"] / found[f"{mode}_shared_s"]
        found[f"{mode}_per_window_frames"], found[f"{mode}_shared_frames"] = decoding_work(path, spans, frames, mode)
    found["approximate_min_psnr_db"] = approximate_psnr(path, spans[:10], frames)
    return found


def report(r: dict) -> str:
    lines = [f"long recording ({r['minutes']:g} min 1280x720, 250-frame GOP, {r['windows']} windows x {r['frames']} "
             f"frames): decode everything {r['everything_s']:.1f} s"]
    for mode in MODES:
        lines.append(f"  {mode} times: shared pass {r[f'{mode}_shared_s']:.1f} s "
                     f"({r[f'{mode}_shared_vs_everything']:.2f}x decode-everything; peak RSS "
                     f"{r[f'{mode}_shared_rss_mib']:.0f} MiB), per-utterance seeking {r[f'{mode}_per_window_s']:.1f} s "
                     f"({r[f'{mode}_per_window_vs_shared']:.1f}x the shared pass); frames to decode: "
                     f"per-utterance {r[f'{mode}_per_window_frames']}, shared {r[f'{mode}_shared_frames']} "
                     f"({r[f'{mode}_per_window_frames'] / r[f'{mode}_shared_frames']:.1f}x)")
    lines.append(f"  approximate frames vs exact ones at the same times: PSNR >= {r['approximate_min_psnr_db']:.1f} dB")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    return bench_main(LongMediaConfig, __doc__, run, report, argv)


if __name__ == "__main__":
    main()
