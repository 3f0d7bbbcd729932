"""The physiological modality's cost: NeuroKit2 feature extraction per minute of a 4-channel recording (ECG,
EDA, respiration, skin temperature, simulated by NeuroKit2) at a wearable rate and at a chest-band rate, and
the added cost per sample of the media stage (reading the file, the window and its baseline window), with the
disk cache off and on (a rerun reads the numbers back).

    python -m benchmarks.physio [--minutes 5] [--windows 8] [--window-s 60]
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mllm_mer.config import Section, option
from mllm_mer.core.types import MediaSettings, Sample
from mllm_mer.media import load_media
from mllm_mer.media.physio import window_features
from mllm_mer.synthetic.physio import CALM, simulate, write_csv

from .common import bench_main

CHANNELS = ("ECG", "EDA", "RESP", "TEMP")


@dataclass
class PhysioOptions(Section):
    """Recording length and the windows read from it."""

    minutes: int = option(5, "length of each simulated recording, in minutes", low=1)
    windows: int = option(8, "windows per recording read through the media stage", low=1)
    window_s: float = option(60.0, "seconds per window", low=10.0)


@dataclass
class PhysioBenchConfig:
    bench: PhysioOptions = field(default_factory=PhysioOptions)


def _recording(folder: Path, minutes: int, rate: int) -> Path:
    signals = simulate(CALM, 60 * minutes, rate, seed=rate)
    return write_csv(folder / f"rec{rate}.csv", {k: signals[k] for k in CHANNELS}, rate)


def _per_minute(path: Path, minutes: int) -> float:
    window_features(str(path), 0.0, 60.0, MediaSettings())  # the file read once, untimed (kept in memory)
    start = time.perf_counter()
    window_features(str(path), None, None, MediaSettings())
    return (time.perf_counter() - start) / minutes


def _per_sample(path: Path, windows: int, window_s: float, cache_gb: float) -> float:
    samples = [Sample(id=str(i), physio=str(path), start=i * window_s, end=(i + 1) * window_s,
                      metadata={"physio_baseline": [0.0, window_s]}) for i in range(windows)]
    start = time.perf_counter()
    for sample in samples:
        load_media(sample, MediaSettings(media_cache_gb=cache_gb), ("physio",))
    return (time.perf_counter() - start) / windows


def run(minutes: int = 5, windows: int = 8, window_s: float = 60.0) -> dict:
    import os

    result = {"minutes": minutes, "windows": windows, "window_s": window_s}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MLLM_MER_CACHE"] = tmp  # a fresh disk cache: the first pass computes, the second reads
        for rate in (128, 700):
            path = _recording(Path(tmp), minutes, rate)
            result[f"per_minute_{rate}_s"] = _per_minute(path, minutes)
            n = min(windows, int(60 * minutes // window_s))
            result[f"per_sample_{rate}_s"] = _per_sample(path, n, window_s, 0.0)
            _per_sample(path, n, window_s, 1.0)  # fills the cache
            result[f"per_sample_cached_{rate}_s"] = _per_sample(path, n, window_s, 1.0)
    result["ratio_700_128"] = result["per_minute_700_s"] / max(result["per_minute_128_s"], np.finfo(float).tiny)
    return result


def report(r: dict) -> str:
    return (f"physio features (4 channels: ECG, EDA, RESP, TEMP; {r['minutes']} min recordings): per minute of "
            f"signal {1000 * r['per_minute_128_s']:.0f} ms at 128 Hz, {1000 * r['per_minute_700_s']:.0f} ms at 700 Hz "
            f"({r['ratio_700_128']:.1f}x); media stage per {r['window_s']:.0f} s sample (window + baseline) "
            f"{1000 * r['per_sample_128_s']:.0f} ms at 128 Hz, {1000 * r['per_sample_700_s']:.0f} ms at 700 Hz; "
            f"from the disk cache {1000 * r['per_sample_cached_128_s']:.1f} ms / "
            f"{1000 * r['per_sample_cached_700_s']:.1f} ms")


def main(argv: list[str] | None = None) -> dict:
    return bench_main(PhysioBenchConfig, __doc__, run, report, argv)


if __name__ == "__main__":
    main()
