"""Where demonstrations come from: a benchmark split loaded and indexed (prompting.demonstrations).

The index itself reads only samples and sits below the datasets; this stage names a split and loads it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from mllm_mer.prompting.demonstrations import DemonstrationIndex


def split_source(dataset: str, data_dir: str, split: str | None) -> str:
    """The name two runs share exactly when they read the same split."""
    return f"{dataset}:{Path(data_dir).resolve()}:{split or ''}"


def index_for(dataset: str, data_dir: str, split: str | None, embedder: str | None = None,
              **loader_options: Any) -> DemonstrationIndex:
    """The index of a split of a dataset (built, or read from its cache)."""
    from mllm_mer.datasets import load_split

    loaded = load_split(dataset, data_dir, split, **loader_options)
    return DemonstrationIndex(loaded.samples, split_source(dataset, data_dir, split), embedder)
