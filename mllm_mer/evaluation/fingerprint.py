"""A run's identity: the settings that must not change between a run and its resumption.

One rule keeps runs resumable as options are added: a setting at its default is left out of the
identity, so a new option, at its default, changes no earlier run's identity. `SCHEMA` says how the
identity is written; a run.json from before it (defaults written out, empty data options left out)
is read by the same rule.
"""
from __future__ import annotations

import json
from dataclasses import asdict, fields
from functools import cache
from pathlib import Path
from typing import Any

from mllm_mer.config import DataConfig, EvaluateConfig, ModelConfig
from mllm_mer.core.types import MediaSettings, PromptSetup
from mllm_mer.pipeline.build import Run

__all__ = ["SCHEMA", "changed_settings", "fingerprint", "identity", "media_fingerprint", "strategy_fingerprint"]

SCHEMA = 2  # 1: run.json before the rule (no "schema" key)
MODALITIES_BEFORE_PHYSIO = ("text", "video", "audio")  # the default modalities a schema-1 run.json wrote out
_EMPTY = (None, {}, "", [])


def fingerprint(cfg: EvaluateConfig, run: Run) -> dict[str, Any]:
    """Settings that must not change between a run and its resumption (JSON-safe), those at their
    defaults left out, with the schema version: the built run's, and the config's data, model and run
    options."""
    data, setup = cfg.data, run.setup
    settings = {
        "dataset": data.dataset, "data_dir": str(Path(data.data_dir).resolve()), "split": cfg.run.split,
        "data": asdict(data), "labels": setup.scheme.name, "tasks": list(setup.scheme.tasks),
        "prompt": {"template": setup.template, "modalities": list(setup.modalities), "mode": setup.mode,
                   "hear_seconds": setup.hear_seconds, "reasoning": reasoning_fingerprint(setup)},
        "media": media_fingerprint(setup.media),
        "model": cfg.model.model, "backend": cfg.model.backend,
        "adapters": cfg.model.adapters, "probabilities": cfg.run.probabilities,
        "temperatures": setup.temperatures,
        "strategy": strategy_fingerprint(cfg, run), "compare_orders": cfg.run.compare_orders,
        "faithfulness": cfg.run.faithfulness,
    }
    return {"schema": SCHEMA, **identity(_json(settings), _defaults())}


def reasoning_fingerprint(setup: PromptSetup) -> dict[str, Any] | None:
    """The answer order and its bound (None: the answer first, as every run before the option)."""
    r = setup.reasoning
    return None if r is None else {"order": r.order, "max_tokens": r.max_tokens}


def media_fingerprint(media: MediaSettings) -> dict[str, Any]:
    """The media settings that change answers: where frames are cached is none of them."""
    return {k: v for k, v in asdict(media).items() if k != "media_cache_gb"}


def strategy_fingerprint(cfg: EvaluateConfig, run: Run) -> dict[str, Any]:
    """The strategy's settings that change answers (its own), and the retrieval it reads."""
    found = run.strategy.fingerprint()
    if "index" in run.needs:
        r = run.retrieval
        found["retrieval"] = {"split": r.retrieve_split, "dataset": r.retrieve_dataset or cfg.data.dataset,
                              "data_dir": str(Path(r.retrieve_data_dir or cfg.data.data_dir).resolve()),
                              "k": r.retrieve_k, "embedder": r.retrieve_embedder}
    return found


def identity(values: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """`values` without what equals its default, section by section (a section left with nothing goes)."""
    kept = {}
    for key, value in values.items():
        if key not in defaults:
            kept[key] = value
        elif isinstance(value, dict) and isinstance(defaults[key], dict) and defaults[key]:
            if inner := identity(value, defaults[key]):
                kept[key] = inner
        elif value != defaults[key]:
            kept[key] = value
    return kept


def changed_settings(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """The settings in which a run directory's saved identity differs from this run's ([]: it resumes)."""
    if "schema" not in saved:
        saved = _before_schema(saved, current)
    return sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))


def _before_schema(saved: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """A run.json written before the schema version, read by the rule: it wrote defaults out (dropped
    here), and left out data options that were empty (None, '', {}), which the current run's may be."""
    saved = _json(saved)
    prompt = saved.get("prompt")
    if isinstance(prompt, dict) and prompt.get("modalities") == list(MODALITIES_BEFORE_PHYSIO):
        prompt.pop("modalities")  # all of them, as then: the default, which now includes the physiological one
    found = {"schema": SCHEMA, **identity(saved, _defaults())}
    data = dict(found.get("data") or {})
    data.update({k: v for k, v in (current.get("data") or {}).items()
                 if k not in (saved.get("data") or {}) and v in _EMPTY})
    found.pop("data", None)
    return {**found, **({"data": data} if data else {})}


@cache
def _default_values() -> str:
    prompt = {f.name: f.default for f in fields(PromptSetup)}
    defaults = {"split": None, "data": asdict(DataConfig()),
                "prompt": {**{k: prompt[k] for k in ("template", "modalities", "mode", "hear_seconds")},
                           "reasoning": None},
                "media": media_fingerprint(MediaSettings()), "model": ModelConfig().model,
                "backend": ModelConfig().backend, "adapters": {}, "probabilities": False, "temperatures": {},
                "strategy": {"strategy": "single"}, "compare_orders": False,
                "faithfulness": False}
    return json.dumps(defaults)


def _defaults() -> dict[str, Any]:
    """The identity's defaults, as run.json would hold them (a fresh copy each time)."""
    return json.loads(_default_values())


def _json(values: dict[str, Any]) -> dict[str, Any]:
    """As run.json will hold it: lists for tuples, and never a bare NaN or infinity (not JSON)."""
    try:
        return json.loads(json.dumps(values, allow_nan=False, default=str))
    except ValueError:
        raise ValueError("a run setting is NaN or infinite; run.json holds only finite numbers") from None
