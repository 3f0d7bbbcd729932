"""Sampled frame decoding vs decoding every frame, on generated 30 s 720p clips.

The sampled path moves each sampled time onto a keyframe within a quarter of the
sampling interval (the default), or with --keyframe-snap 0 decodes the exact frame
from the keyframe governing it; runs in different GOPs decode on separate threads.
The baseline decodes every frame to RGB and picks 8 (what reading a whole clip into
an array does), with the codec's frame threads. How much sampling saves depends on the keyframe interval, so two
clips are measured: a 2 s GOP (the usual streaming/web setting) and x264's default
250-frame GOP (the worst case: exact frames then need most of the file decoded). Both are
x264 veryfast (B-frames, CABAC) at x264's default quality, crf 23.

    python -m benchmarks.media [--quick] [--seconds 30] [--frames 8]
"""
from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from mllm_mer.config import Section, option
from mllm_mer.media import MediaSettings
from mllm_mer.media.decode import decode_all
from mllm_mer.media.video import read_frames
from mllm_mer.synthetic.media import write_clip

from .common import best_of, machine, parse_config

DEFAULT_SNAP = MediaSettings().keyframe_snap


@dataclass
class MediaOptions(Section):
    """Clips generated and frames sampled."""

    quick: bool = option(False, "one repeat instead of the best of three")
    seconds: float = option(30.0, "length of each generated 720p clip, in seconds")
    frames: int = option(8, "frames sampled per clip")


@dataclass
class MediaBenchConfig:
    bench: MediaOptions = field(default_factory=MediaOptions)


def measure(clip: Path, frames: int, repeats: int, snap: float = 0.0) -> float:
    """Sampled decoding, best of `repeats`. `read_frames` caches per file version, so each repeat
    reads a new name of the clip (a hard link, made untimed): decoding is measured, not the cache."""
    counter = itertools.count()
    current: list[Path] = []

    def new_name() -> None:
        path = clip.with_name(f"{clip.stem}-snap{snap}-{next(counter)}{clip.suffix}")
        try:
            os.link(clip, path)
        except OSError:  # a file system without hard links
            shutil.copyfile(clip, path)
        current[:] = [path]

    return best_of(lambda: read_frames(str(current[0]), n=frames, keyframe_snap=snap), repeats, setup=new_name)


def run(seconds: float = 30.0, frames: int = 8, size=(1280, 720), fps: int = 30, repeats: int = 3) -> dict:
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, gop in (("gop2s", 2 * fps), ("gop250", 250)):
            clip = write_clip(Path(tmp) / f"{name}.mp4", seconds=seconds, fps=fps, size=size, gop=gop,
                              audio=False, texture=True, preset="veryfast", crf=23)
            t_all = best_of(lambda clip=clip: decode_all(str(clip)), repeats)
            t_exact = measure(clip, frames, repeats)
            t_snap = measure(clip, frames, repeats, snap=DEFAULT_SNAP)
            results[name] = {"decode_all_s": t_all, "sampled_s": t_exact, "snapped_s": t_snap,
                             "ratio": t_all / t_exact, "ratio_snapped": t_all / t_snap}
    results["clip"] = f"{seconds:.0f} s {size[0]}x{size[1]} @ {fps} fps"
    results["frames"] = frames
    results["snap"] = DEFAULT_SNAP
    results["ratio"] = results["gop2s"]["ratio_snapped"]
    return results


def report(result: dict, name: str = "gop2s", label: str = "2 s GOP") -> str:
    r = result[name]
    return (f"media ({label}, {result['clip']}): decode everything {r['decode_all_s']:.2f} s; {result['frames']} "
            f"frames, default sampling (keyframe-snap {result['snap']}) {r['snapped_s']:.2f} s "
            f"({r['ratio_snapped']:.1f}x), exact times {r['sampled_s']:.2f} s ({r['ratio']:.1f}x)")


def main(argv: list[str] | None = None) -> dict:
    options = parse_config(MediaBenchConfig, __doc__, argv).bench
    result = run(options.seconds, options.frames, repeats=1 if options.quick else 3)
    print(f"machine: {machine()}")
    for name, label in (("gop2s", "2 s GOP"), ("gop250", "250-frame GOP")):
        print(report(result, name, label))
    return result


if __name__ == "__main__":
    main()
