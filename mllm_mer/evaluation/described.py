"""Open-vocabulary answers and free-text descriptions, scored as the field does: emotion words taken from
descriptions (the bundled lexicon, or the judge), synonym groups per sample (a released file, or the
judge), and the set-level metrics over them, with the judge behind every judged number named."""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mllm_mer.core.types import LabelSet
from mllm_mer.evaluation.extraction import extract
from mllm_mer.evaluation.judge import Judge
from mllm_mer.evaluation.synonym_groups import Groups, read_groups, synonym_metrics, word_list
from mllm_mer.evaluation.uncertainty import intervals, mean_stat, resample_weights

CACHE = "judge_cache.jsonl"  # in the run directory: rescoring asks no verdict twice


@contextlib.contextmanager
def judge_for(judge_cfg, options, out: Path) -> Iterator[Judge | None]:
    """The run's judge, loaded only when a judged number is asked for; closed on exit."""
    if not judge_cfg.judge_model:
        if options.extract == "judge":
            raise ValueError("--extract judge needs a judge: name it with --judge-model")
        yield None
        return
    with open_judge(judge_cfg, out / CACHE) as judge:
        yield judge


@contextlib.contextmanager
def open_judge(judge_cfg, cache: Path) -> Iterator[Judge]:
    """The judge `--judge-model` names, its verdicts cached in `cache`; a judge that cannot load is one line."""
    from mllm_mer.config import BackendConfig, build
    from mllm_mer.evaluation.judge_identity import judge_identity
    from mllm_mer.pipeline.build import open_backend

    config = build(BackendConfig, model=judge_cfg.judge_model, backend=judge_cfg.judge_backend,
                   base_url=[judge_cfg.judge_base_url] if judge_cfg.judge_base_url else [],
                   api_key=os.environ.get("MLLM_MER_API_KEY"))  # a served judge's key, as for every client
    try:
        backend = open_backend(config)
    except (OSError, ValueError, RuntimeError) as error:
        raise ValueError(f"--judge-model {judge_cfg.judge_model}: the judge cannot load ({error})") from None
    with backend:
        identity = judge_identity(judge_cfg.judge_model, judge_cfg.judge_backend, _served_card(backend))
        yield Judge(backend, identity, cache)


def _served_card(backend) -> dict[str, Any] | None:
    """The server's model card when the judge is served (backend openai)."""
    from mllm_mer.backends.openai_client import OpenAIBackend

    if not isinstance(backend, OpenAIBackend):
        return None
    # The listing, not GET /v1/models/{id}: vLLM serves only the list, and so does `mllm-mer serve`'s guard.
    cards = [m.model_dump() for m in backend.client.models.list()]
    return next((c for c in cards if c.get("id") == backend.model_name), {"id": backend.model_name})


def words_of(texts: Sequence[Any], how: str, judge: Judge | None) -> list[list[str] | None]:
    """Each description's emotion words (None where there is no text: a failed answer)."""
    present = [i for i, t in enumerate(texts) if isinstance(t, str) and t.strip()]
    found: list[list[str] | None] = [None] * len(texts)
    if how == "judge":
        verdicts = judge.ask("extract", [{"description": texts[i]} for i in present])
        words = [word_list(v.get("emotions")) if "error" not in v else [] for v in verdicts]
    else:
        words = [extract(texts[i]) for i in present]
    for i, w in zip(present, words, strict=True):
        found[i] = w
    return found


def groupings(ids: Sequence[str], gold: Sequence[list[str]], predicted: Sequence[list[str] | None],
              options, judge: Judge | None) -> tuple[dict[str, Groups], str]:
    """Per-sample synonym groups and where they come from (the file, or the judge's id)."""
    if options.synonym_groups:
        return read_groups(options.synonym_groups), f"file {Path(options.synonym_groups).name}"
    unions = [list(dict.fromkeys([*g, *(p or [])])) for g, p in zip(gold, predicted, strict=True)]
    asked = [i for i, words in enumerate(unions) if len(words) > 1]
    verdicts = judge.ask("synonyms", [{"words": unions[i]} for i in asked])
    groups = {ids[i]: v["groups"] for i, v in zip(asked, verdicts, strict=True) if "error" not in v}
    return groups, f"judge {judge.identity['id']}"


def synonym_section(records: list[dict[str, Any]], ls: LabelSet, options, judge: Judge | None
                    ) -> dict[str, Any] | None:
    """The OV-MERD set metrics of an open-vocabulary task, when groups come from a file or a judge."""
    if not ls.open or not (options.synonym_groups or judge):
        return None
    rows = [r for r in records if word_list(r["gold"].get(ls.task))]
    ids = [r["id"] for r in rows]
    gold = [word_list(r["gold"].get(ls.task)) for r in rows]
    predicted = [_answer_words(r["prediction"], ls.task) for r in rows]
    groups, source = groupings(ids, gold, predicted, options, judge)
    metrics = synonym_metrics(ids, gold, predicted, groups, [r.get("dialogue") for r in rows]
                              if any(r.get("dialogue") is not None for r in rows) else None)
    return {**metrics, "groups_from": source}


def _answer_words(prediction: dict[str, Any], task: str) -> list[str] | None:
    if not prediction.get("ok"):
        return None
    found = (prediction.get("tasks") or {}).get(task) or {}
    return word_list(found.get("labels") or ([found["label"]] if found.get("label") else []))


def reference_section(ids: Sequence[str], texts: Sequence[Any], references: Sequence[str | None],
                      judge: Judge | None) -> dict[str, Any] | None:
    """EMER: each description rated against its reference by the judge (clue and label overlap, 0-10), averaged
    over the samples that have both, with bootstrap intervals."""
    pairs = [(i, t, r) for i, t, r in zip(ids, texts, references, strict=True) if r and isinstance(t, str)
             and t.strip()]
    if judge is None:
        raise ValueError("--reference-col needs a judge to rate descriptions: name it with --judge-model")
    if not pairs:
        return None
    verdicts = judge.ask("reference", [{"description": t, "reference": r} for _, t, r in pairs])
    rated = [v for v in verdicts if "error" not in v]
    if not rated:
        return {"n": 0, "unrated": len(verdicts)}
    columns = {k: np.asarray([float(v[k]) for v in rated]) for k in ("clue_overlap", "label_overlap")}
    stat = mean_stat(columns)
    return {"n": len(rated), "unrated": len(verdicts) - len(rated), **stat(np.ones(len(rated))),
            "intervals": intervals(stat, resample_weights(np.arange(len(rated))))}
