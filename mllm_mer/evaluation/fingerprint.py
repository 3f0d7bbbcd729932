"""A run's identity: the settings that must not change between a run and its resumption."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from mllm_mer.config import EvaluateConfig
from mllm_mer.core.types import MediaSettings, PromptSetup
from mllm_mer.pipeline.resources import needed
from mllm_mer.strategies import Strategy


def fingerprint(cfg: EvaluateConfig, setup: PromptSetup, strategy: Strategy) -> dict[str, Any]:
    """Settings that must not change between a run and its resumption (JSON-safe)."""
    data = cfg.data
    return {
        "dataset": data.dataset, "data_dir": str(Path(data.data_dir).resolve()), "split": cfg.run.split,
        "data": data.describe(), "labels": setup.scheme.name, "tasks": list(setup.scheme.tasks),
        "prompt": {"template": setup.template, "modalities": list(setup.modalities), "mode": setup.mode,
                   **({"hear_seconds": setup.hear_seconds} if setup.hear_seconds else {})},
        "media": media_fingerprint(setup.media),
        "model": cfg.model.model, "backend": cfg.model.backend,
        "adapters": cfg.model.adapters, "probabilities": cfg.run.probabilities,
        "temperatures": setup.temperatures,
        "strategy": strategy_fingerprint(cfg, setup, strategy),
    }


def media_fingerprint(media: MediaSettings) -> dict[str, Any]:
    """The media settings that change answers: the disk cache is none of them, and the front end's
    settings count only where they differ from their defaults (runs from before it still resume)."""
    from mllm_mer.media.frontend import FRONT_END_NAMES, front_end

    kept = {k: v for k, v in asdict(media).items() if k != "media_cache_gb" and k not in FRONT_END_NAMES}
    return {**kept, **front_end(media)}


def strategy_fingerprint(cfg: EvaluateConfig, setup: PromptSetup, strategy: Strategy) -> dict[str, Any]:
    """The strategy's settings that change answers (its own), and the retrieval it reads."""
    found = strategy.fingerprint()
    if "index" in needed(setup, strategy):
        r = cfg.retrieval
        found["retrieval"] = {"split": r.retrieve_split, "dataset": r.retrieve_dataset or cfg.data.dataset,
                              "data_dir": str(Path(r.retrieve_data_dir or cfg.data.data_dir).resolve()),
                              "k": r.retrieve_k, "embedder": r.retrieve_embedder}
    return found
