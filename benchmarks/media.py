"""Sampled frame decoding vs decoding every frame, on generated 30 s 720p clips.

The sampled path moves each sampled time onto a keyframe within a quarter of the
sampling interval (the default), or with --keyframe-snap 0 decodes the exact frame
from the keyframe governing it; runs in different GOPs decode on separate threads.
The baseline decodes every frame to RGB and picks 8 (what reading a whole clip into
an array does), with the codec's frame threads. How much sampling saves depends on the keyframe interval, so two
clips are measured: a 2 s GOP (the usual streaming/web setting) and x264's default
250-frame GOP (the worst case: exact frames then need most of the file decoded).

    python benchmarks/media.py [--quick] [--seconds 30] [--frames 8]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import best_of, machine  # noqa: E402

from mllm_mer.media import MediaSettings  # noqa: E402
from mllm_mer.media.synth import write_clip  # noqa: E402
from mllm_mer.media.video import _read_frames_cached, decode_all, read_frames  # noqa: E402


def measure(clip: str, frames: int, repeats: int, snap: float = 0.0) -> float:
    def sampled():
        _read_frames_cached.cache_clear()  # measure decoding, not the cache
        read_frames(clip, n=frames, keyframe_snap=snap)

    return best_of(sampled, repeats)


def run(seconds: float = 30.0, frames: int = 8, size=(1280, 720), fps: int = 30, repeats: int = 3) -> dict:
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, gop in (("gop2s", 2 * fps), ("gop250", 250)):
            clip = write_clip(Path(tmp) / f"{name}.mp4", seconds=seconds, fps=fps, size=size, gop=gop,
                              audio=False, texture=True, preset="veryfast")
            t_all = best_of(lambda: decode_all(str(clip)), repeats)
            t_exact = measure(str(clip), frames, repeats)
            t_snap = measure(str(clip), frames, repeats, snap=MediaSettings.keyframe_snap)
            results[name] = {"decode_all_s": t_all, "sampled_s": t_exact, "snapped_s": t_snap,
                             "ratio": t_all / t_exact, "ratio_snapped": t_all / t_snap}
    results["clip"] = f"{seconds:.0f} s {size[0]}x{size[1]} @ {fps} fps"
    results["frames"] = frames
    results["snap"] = MediaSettings.keyframe_snap
    results["ratio"] = results["gop2s"]["ratio_snapped"]
    return results


def report(result: dict, name: str = "gop2s", label: str = "2 s GOP") -> str:
    r = result[name]
    return (f"media ({label}, {result['clip']}): decode everything {r['decode_all_s']:.2f} s; {result['frames']} "
            f"frames, default sampling (keyframe-snap {result['snap']}) {r['snapped_s']:.2f} s "
            f"({r['ratio_snapped']:.1f}x), exact times {r['sampled_s']:.2f} s ({r['ratio']:.1f}x)")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one repeat")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--frames", type=int, default=8)
    args = parser.parse_args(argv)
    result = run(args.seconds, args.frames, repeats=1 if args.quick else 3)
    print(f"machine: {machine()}")
    for name, label in (("gop2s", "2 s GOP"), ("gop250", "250-frame GOP")):
        r = result[name]
        print(report(result, name, label))
    return result


if __name__ == "__main__":
    main()
