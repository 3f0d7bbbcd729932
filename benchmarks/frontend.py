"""The front end's cost per clip: eGeMAPS cues vs the old hand-made ones, face crops vs whole frames,
peak selection vs uniform sampling, on generated 720p clips of a real portrait moving across the frame
and real synthesised speech (espeak-ng) of the same length.

Each mode reads its own hard link of every clip, so no in-process or disk cache serves a later mode.

    python -m benchmarks.frontend [--clips 16] [--seconds 6] [--frames 8]
"""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from mllm_mer.config import Section, option
from mllm_mer.core.types import MediaSettings, Sample
from mllm_mer.media import load_media
from mllm_mer.media.acoustic import egemaps
from mllm_mer.media.cues import vocal_cues
from mllm_mer.synthetic.frontend import face_clip, speak

from .common import bench_main

SENTENCES = ("I cannot believe you did that again.", "Well, that is wonderful news for all of us.",
             "Please leave me alone for a while.", "Are you sure this is the right way home?")


@dataclass
class FrontEndOptions(Section):
    """Clips generated and frames sampled."""

    clips: int = option(16, "generated 720p clips")
    seconds: float = option(6.0, "length of each clip, in seconds")
    frames: int = option(8, "frames sampled per clip")


@dataclass
class FrontEndBenchConfig:
    bench: FrontEndOptions = field(default_factory=FrontEndOptions)


def _per_clip(fn, items) -> float:
    start = time.perf_counter()
    for item in items:
        fn(item)
    return (time.perf_counter() - start) / len(items)


def _visual(clips: list[Path], settings: MediaSettings, tag: str) -> float:
    links = []
    for clip in clips:
        link = clip.with_name(f"{clip.stem}-{tag}{clip.suffix}")
        os.link(clip, link)
        links.append(link)
    return _per_clip(lambda p: load_media(Sample(id=p.stem, video=str(p)), settings, ("video",)), links)


def run(clips: int = 16, seconds: float = 6.0, frames: int = 8) -> dict:
    waves = [speak(SENTENCES[i % 4], pitch=30 + 4 * i, rate=130 + 10 * i) for i in range(clips)]
    egemaps(waves[0]), vocal_cues(waves[0])  # load openSMILE and the VAD model untimed
    result = {"clips": clips, "clip": f"{seconds:.0f} s 1280x720 @ 25 fps", "frames": frames}
    result["cues_basic_s"] = _per_clip(vocal_cues, waves)
    result["cues_egemaps_s"] = _per_clip(egemaps, waves)
    with tempfile.TemporaryDirectory() as tmp:
        paths = [face_clip(Path(tmp) / f"c{i}.mp4", seconds=seconds, fps=25, side=256 + 16 * (i % 4))
                 for i in range(clips)]
        base = MediaSettings(max_frames=frames)
        result["frames_s"] = _visual(paths, base, "frames")
        result["faces_s"] = _visual(paths, MediaSettings(max_frames=frames, visual="faces"), "faces")
        result["peak_s"] = _visual(paths, MediaSettings(max_frames=frames, frame_selection="peak"), "peak")
    result["ratio_cues"] = result["cues_egemaps_s"] / result["cues_basic_s"]
    result["ratio_faces"] = result["faces_s"] / result["frames_s"]
    result["ratio_peak"] = result["peak_s"] / result["frames_s"]
    return result


def report(r: dict) -> str:
    return (f"front end ({r['clips']} clips, {r['clip']}, {r['frames']} frames), per clip: vocal cues basic "
            f"{1000 * r['cues_basic_s']:.0f} ms, eGeMAPS {1000 * r['cues_egemaps_s']:.0f} ms "
            f"({r['ratio_cues']:.2f}x); whole frames {1000 * r['frames_s']:.0f} ms, face crops "
            f"{1000 * r['faces_s']:.0f} ms ({r['ratio_faces']:.2f}x); peak selection {1000 * r['peak_s']:.0f} ms "
            f"({r['ratio_peak']:.2f}x of uniform)")


def main(argv: list[str] | None = None) -> dict:
    return bench_main(FrontEndBenchConfig, __doc__, run, report, argv)


if __name__ == "__main__":
    main()
