"""Metrics of list answers: multi-label gold (micro/macro F1 over labels, subset accuracy) and
open-vocabulary answers scored on emotion wheels (the OV-MER / AffectGPT protocol). Pure functions.

A failed answer is an empty set: wrong on subset accuracy, no true positives, zero precision and recall.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support
from sklearn.preprocessing import MultiLabelBinarizer

from mllm_mer.core.emotion_wheels import BASIC_WHEEL, Wheels
from mllm_mer.evaluation.uncertainty import Stat, group_ids, intervals, mean_stat, resample_weights

MULTI_HEADLINE = ("subset_accuracy", "micro_f1", "macro_f1", "failure_rate")
OPEN_HEADLINE = ("ov_f", "ov_precision", "ov_recall", "hit_rate", "failure_rate")


def multilabel_metrics(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str] | None],
                       labels: Sequence[str]) -> dict[str, Any]:
    """Subset accuracy, micro/macro F1 over labels and per-label P/R/F1 (scikit-learn)."""
    if len(gold) != len(predicted) or not gold:
        raise ValueError("gold and predicted must be non-empty and of the same length")
    binarizer = MultiLabelBinarizer(classes=list(labels))
    y = binarizer.fit_transform([list(g) for g in gold])
    p = binarizer.transform([list(x or ()) for x in predicted])
    precision, recall, f1, support = precision_recall_fscore_support(y, p, zero_division=0)
    return {"n": len(gold), "headline": list(MULTI_HEADLINE),
            "subset_accuracy": float(accuracy_score(y, p)),
            "micro_f1": float(f1_score(y, p, average="micro", zero_division=0)),
            "macro_f1": float(f1_score(y, p, average="macro", zero_division=0)),
            "failure_rate": float(sum(x is None for x in predicted) / len(predicted)),
            "per_class": {label: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                                  "support": int(support[i])} for i, label in enumerate(labels)}}


def multilabel_stat(y: np.ndarray, p: np.ndarray) -> Stat:
    """Subset accuracy and micro/macro F1 as functions of sample weights (indicator matrices N x L)."""
    exact = np.all(y == p, axis=1).astype(float)
    tp, fp, fn = (y & p).astype(float), (~y & p).astype(float), (y & ~p).astype(float)

    def stat(w: np.ndarray) -> dict[str, float]:
        t, f_p, f_n = w @ tp, w @ fp, w @ fn
        denominator = 2 * t + f_p + f_n
        per_label = np.divide(2 * t, denominator, out=np.zeros_like(t), where=denominator > 0)
        micro = 2 * t.sum() / max(denominator.sum(), 1e-12)
        return {"subset_accuracy": float(w @ exact / w.sum()), "micro_f1": float(micro),
                "macro_f1": float(per_label.mean())}

    return stat


def multilabel_intervals(gold, predicted, labels, groups=None) -> dict[str, list[float]]:
    binarizer = MultiLabelBinarizer(classes=list(labels))
    y = binarizer.fit_transform([list(g) for g in gold]).astype(bool)
    p = binarizer.transform([list(x or ()) for x in predicted]).astype(bool)
    return intervals(multilabel_stat(y, p), resample_weights(group_ids(groups, len(gold))))


def _sample_scores(gold: set[str], predicted: set[str]) -> tuple[float, float]:
    """(precision, recall) of one sample's mapped sets; an empty answer scores 0 and 0."""
    if not predicted or not gold:
        return 0.0, 0.0
    overlap = len(gold & predicted)
    return overlap / len(predicted), overlap / len(gold)


def open_vocab_columns(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str] | None],
                       wheels: Wheels) -> dict[str, np.ndarray]:
    """Per sample and wheel: precision and recall of the words mapped to the wheel's inner sectors;
    and whether the gold basic label's sector is among the answer's (single-label gold only)."""
    columns: dict[str, list[float]] = {}
    for name in wheels.sectors:
        for g, p in zip(gold, predicted, strict=True):
            precision, recall = _sample_scores({wheels.sector(name, w) for w in g},
                                               {wheels.sector(name, w) for w in p or ()})
            columns.setdefault(f"{name}_precision", []).append(precision)
            columns.setdefault(f"{name}_recall", []).append(recall)
    if all(len(g) == 1 for g in gold):
        columns["hit_rate"] = [float(wheels.sector(BASIC_WHEEL, g[0]) in {wheels.sector(BASIC_WHEEL, w)
                                                                           for w in p or ()})
                               for g, p in zip(gold, predicted, strict=True)]
    return {k: np.asarray(v, dtype=float) for k, v in columns.items()}


def _f(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def open_vocab_stat(columns: dict[str, np.ndarray], wheel_names: Sequence[str]) -> Stat:
    """Mean precision and recall per wheel, F per wheel, and their means over wheels (plus the hit rate)."""
    means = mean_stat(columns)

    def stat(w: np.ndarray) -> dict[str, float]:
        m = means(w)
        found = {}
        for name in wheel_names:
            found[f"{name}_f"] = _f(m[f"{name}_precision"], m[f"{name}_recall"])
        found["ov_f"] = float(np.mean([found[f"{n}_f"] for n in wheel_names]))
        found["ov_precision"] = float(np.mean([m[f"{n}_precision"] for n in wheel_names]))
        found["ov_recall"] = float(np.mean([m[f"{n}_recall"] for n in wheel_names]))
        if "hit_rate" in m:
            found["hit_rate"] = m["hit_rate"]
        return found

    return stat


def open_vocab_metrics(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str] | None], wheels: Wheels,
                       groups=None) -> dict[str, Any]:
    """Set-level precision, recall and F per wheel and averaged over wheels; hit rate; words outside
    the vocabulary (by name and count); with bootstrap intervals."""
    if len(gold) != len(predicted) or not gold:
        raise ValueError("gold and predicted must be non-empty and of the same length")
    columns = open_vocab_columns(gold, predicted, wheels)
    stat = open_vocab_stat(columns, list(wheels.sectors))
    point = stat(np.ones(len(gold)))
    outside = Counter(wheels.word(w) for p in predicted for w in p or () if wheels.word(w) not in wheels.sectors[
        BASIC_WHEEL])
    result = {"n": len(gold), "headline": [k for k in OPEN_HEADLINE if k in point or k == "failure_rate"], **point,
              "failure_rate": float(sum(p is None for p in predicted) / len(predicted)),
              "per_wheel": {n: {"precision": float(columns[f"{n}_precision"].mean()),
                                "recall": float(columns[f"{n}_recall"].mean()), "f": point[f"{n}_f"]}
                            for n in wheels.sectors},
              "empty_answers": int(sum(not p for p in predicted)),
              "words_outside_vocabulary": dict(outside.most_common())}
    result["intervals"] = intervals(stat, resample_weights(group_ids(groups, len(gold))))
    return result
