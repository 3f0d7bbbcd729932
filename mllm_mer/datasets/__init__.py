"""Benchmark loaders: one small module per release layout, all returning a Split of Samples.

    load_split("meld", "data/MELD.Raw", "test", context=5)
    to_hf_dataset(split.samples)   # a datasets.Dataset, one row per Sample
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from mllm_mer.datasets.base import DatasetError, Split, from_hf_dataset, to_hf_dataset

DATASETS = ("meld", "iemocap", "iemocap4", "mer2024", "ravdess", "mosi", "mosei", "mosi7", "mosei7", "manifest",
            "distilled")

__all__ = ["DATASETS", "DatasetError", "Split", "load_split", "load_hf", "to_hf_dataset", "from_hf_dataset"]


def load_split(name: str, data_dir: str | Path, split: str, **options: Any) -> Split:
    """Samples of `split` of dataset `name` found at `data_dir` (a manifest file for `manifest`)."""
    if name == "meld":
        from mllm_mer.datasets import meld
        return meld.load(data_dir, split, **options)
    if name in ("iemocap", "iemocap4"):
        from mllm_mer.datasets import iemocap
        return iemocap.load(data_dir, split, ways=4 if name == "iemocap4" else 6, **options)
    if name == "mer2024":
        from mllm_mer.datasets import mer2024
        return mer2024.load(data_dir, split, **options)
    if name == "ravdess":
        from mllm_mer.datasets import ravdess
        return ravdess.load(data_dir, split, **options)
    if name in ("mosi", "mosei", "mosi7", "mosei7"):
        from mllm_mer.datasets import mosi
        return mosi.load(data_dir, split, classes=7 if name.endswith("7") else 2, **options)
    if name == "manifest":
        from mllm_mer.datasets import manifest
        return manifest.load(data_dir, split, **options)
    if name == "distilled":
        from mllm_mer.datasets import distilled
        return distilled.load(data_dir, split, **options)
    raise DatasetError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")


def load_hf(name: str, data_dir: str | Path, split: str, **options: Any):
    """The split as a `datasets.Dataset` (one row per Sample; see base.sample_to_row)."""
    return to_hf_dataset(load_split(name, data_dir, split, **options).samples)
