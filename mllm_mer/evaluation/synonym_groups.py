"""Open-vocabulary answers scored by synonym grouping (the MER2024-OV / OV-MERD protocol). Pure functions.

Per sample, a judge (or a released file) groups the union of gold and predicted words into synonym
groups; every word maps to its group's first word; precision = |gold ∩ pred| / |pred| and
recall = |gold ∩ pred| / |gold| on the mapped sets (0 and 0 for an empty prediction), averaged
over samples; the headline is the mean of the two averages.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mllm_mer.evaluation.uncertainty import group_ids, intervals, mean_stat, resample_weights
from mllm_mer.prompting import as_list

Groups = list[list[str]]
SYNONYM_HEADLINE = ("ov_mean", "ov_precision", "ov_recall", "failure_rate")


def fold(word: str) -> str:
    """Case and whitespace folded, surrounding punctuation stripped: how words are compared."""
    return " ".join(str(word).strip().strip(".,;:!?\"'").lower().split())


def word_list(cell: Any) -> list[str]:
    """A list cell as released (a Python list literal, a JSON list, a list, comma-separated words), its
    words folded and kept in order, once each; an empty or missing cell gives []."""
    if cell is None or (isinstance(cell, float) and np.isnan(cell)):
        return []
    return list(dict.fromkeys(w for w in (fold(x) for x in as_list(cell)) if w))


def mapping(groups: Groups) -> dict[str, str]:
    """Word -> its group's first word (folded); a word in two groups keeps its first group."""
    found: dict[str, str] = {}
    for group in groups:
        words = [fold(w) for w in group if fold(w)]
        for word in words:
            found.setdefault(word, words[0])
    return found


def sample_scores(gold: Sequence[str], predicted: Sequence[str] | None, groups: Groups) -> tuple[float, float]:
    """(precision, recall) of one sample after mapping each word to its synonym group."""
    to_group = mapping(groups)
    g = {to_group.get(fold(w), fold(w)) for w in gold if fold(w)}
    p = {to_group.get(fold(w), fold(w)) for w in predicted or () if fold(w)}
    if not g or not p:
        return 0.0, 0.0
    overlap = len(g & p)
    return overlap / len(p), overlap / len(g)


def read_groups(path: str | Path) -> dict[str, Groups]:
    """A groupings file: JSON (a list of records, or {id: groups}) or JSONL, one record per sample:
    `{"id": "sample_001", "groups": [["joyful", "happy"], ["worried"]]}`."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"--synonym-groups {file}: cannot read it ({error})") from None
    try:
        data = json.loads(text)
        records = [{"id": k, "groups": v} for k, v in data.items()] if isinstance(data, dict) else data
    except json.JSONDecodeError:
        records = [_jsonl_line(file, n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    found: dict[str, Groups] = {}
    for n, record in enumerate(records if isinstance(records, list) else [], 1):
        groups = record.get("groups") if isinstance(record, dict) else None
        if "id" not in (record if isinstance(record, dict) else {}) or not _is_groups(groups):
            raise ValueError(f"--synonym-groups {file}: record {n} needs an id and groups (a list of word lists)")
        found[str(record["id"])] = [[str(w) for w in group] for group in groups]
    if not found:
        raise ValueError(f"--synonym-groups {file}: no groupings in it")
    return found


def _jsonl_line(file: Path, n: int, line: str) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as error:
        raise ValueError(f"--synonym-groups {file}:{n}: not JSON ({error.msg})") from None


def _is_groups(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(g, list) for g in value)


def synonym_metrics(ids: Sequence[str], gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str] | None],
                    groups: Mapping[str, Groups], clusters=None) -> dict[str, Any]:
    """Averaged set-level precision and recall under per-sample synonym groups, their mean (the
    headline), with bootstrap intervals. A sample without a grouping compares words as they are."""
    if not (len(ids) == len(gold) == len(predicted)) or not gold:
        raise ValueError("ids, gold and predicted must be non-empty and of the same length")
    scores = [sample_scores(g, p, groups.get(i, [])) for i, g, p in zip(ids, gold, predicted, strict=True)]
    columns = {"ov_precision": np.array([s[0] for s in scores]), "ov_recall": np.array([s[1] for s in scores])}
    means = mean_stat(columns)

    def stat(w: np.ndarray) -> dict[str, float]:
        m = means(w)
        return {**m, "ov_mean": (m["ov_precision"] + m["ov_recall"]) / 2}

    point = stat(np.ones(len(gold)))
    return {"n": len(gold), "headline": list(SYNONYM_HEADLINE), **point,
            "failure_rate": float(sum(p is None for p in predicted) / len(predicted)),
            "grouped": int(sum(i in groups for i in ids)),
            "intervals": intervals(stat, resample_weights(group_ids(clusters, len(gold))))}
