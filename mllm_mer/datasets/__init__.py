"""Benchmark loaders: one small module per release layout, all returning a Split of Samples.

    load_split("meld", "data/MELD.Raw", "test", context=5)
    load_configured(cfg.data, "test", labels)   # the same, from a verb's DataConfig
    to_hf_dataset(split.samples)                # a datasets.Dataset, one row per Sample

The registry is data (`core.registry.DATASETS`): a name -> its loader module and the fixed keywords it takes.
A loader module may define `config_options(data, labels)` for options only it reads (the
manifest's column names); `context` and `video_dir` go to every loader that takes them.
"""
from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any

from mllm_mer.core.registry import DATASETS as REGISTERED
from mllm_mer.datasets.base import DatasetError, Split, from_hf_dataset, to_hf_dataset

LOADERS = REGISTERED
DATASETS = tuple(LOADERS)

__all__ = ["DATASETS", "LOADERS", "DatasetError", "Split", "from_hf_dataset", "load_configured", "load_hf",
           "load_split", "loader_options", "to_hf_dataset"]


def _module(name: str):
    if name not in LOADERS:
        raise DatasetError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    return importlib.import_module(LOADERS[name][0])


def load_split(name: str, data_dir: str | Path, split: str, **options: Any) -> Split:
    """Samples of `split` of dataset `name` found at `data_dir` (a manifest file for `manifest`)."""
    module = _module(name)
    return module.load(data_dir, split, **{**LOADERS[name][1], **options})


def loader_options(data, labels: str | None) -> dict[str, Any]:
    """Keywords for `load_split` from a verb's DataConfig (only those the chosen loader takes)."""
    options = dict(data.dataset_options)
    if not data.dataset:
        return options
    module = _module(data.dataset)
    takes = inspect.signature(module.load).parameters
    if data.context_window is not None and "context" in takes:
        options["context"] = data.context_window
    if data.video_dir:
        options["video_dir"] = data.video_dir
    if hasattr(module, "config_options"):
        for key, value in module.config_options(data, labels).items():
            options.setdefault(key, value)
    return options


def load_configured(data, split: str | None, labels: str | None = None, limit: int | None = None) -> Split:
    """The split a verb's DataConfig names (`--dataset`, `--data-dir`, loader options); `limit`: the first
    samples only, where the loader can stop early (a big manifest)."""
    options = loader_options(data, labels)
    if limit is not None and "limit" in inspect.signature(_module(data.dataset).load).parameters:
        options["limit"] = limit
    return load_split(data.dataset, data.data_dir, split, **options)


def load_hf(name: str, data_dir: str | Path, split: str, **options: Any):
    """The split as a `datasets.Dataset` (one row per Sample; see base.sample_to_row)."""
    return to_hf_dataset(load_split(name, data_dir, split, **options).samples)
