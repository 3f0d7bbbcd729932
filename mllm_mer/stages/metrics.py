"""The field's metrics from (gold, predicted) pairs. Pure functions over scikit-learn.

A sample whose answer failed (parse error, bad media) counts as wrong: it is kept
under the pseudo-label FAILED, so accuracy is over every sample with a gold label,
and the failure rate is reported beside it.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

FAILED = "<failed>"


def classification_metrics(gold: Sequence[str], predicted: Sequence[str | None],
                           labels: Sequence[str]) -> dict[str, Any]:
    if len(gold) != len(predicted):
        raise ValueError("gold and predicted differ in length")
    if not gold:
        raise ValueError("no samples with a gold label to score")
    pred = [p if p is not None else FAILED for p in predicted]
    label_list = list(labels)
    # Failures are wrong answers; averaged scores are over the real classes only.
    precision, recall, f1, support = precision_recall_fscore_support(
        gold, pred, labels=label_list, zero_division=0)
    present = [label for label in label_list if label in set(gold)]
    cm_labels = label_list + ([FAILED] if FAILED in pred else [])
    return {
        "n": len(gold),
        "accuracy": float(accuracy_score(gold, pred)),
        "weighted_f1": float(f1_score(gold, pred, labels=present, average="weighted", zero_division=0)),
        "macro_f1": float(f1_score(gold, pred, labels=present, average="macro", zero_division=0)),
        # UAR: unweighted average recall over the classes present in the gold labels.
        "uar": float(np.mean([recall[label_list.index(label)] for label in present])),
        "failure_rate": float(sum(p == FAILED for p in pred) / len(pred)),
        "per_class": {label: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                              "support": int(support[i])} for i, label in enumerate(label_list)},
        "confusion": {"labels": cm_labels,
                      "matrix": confusion_matrix(gold, pred, labels=cm_labels).tolist()},
    }


def sentiment_regression_metrics(gold_scores: Sequence[float], predicted_scores: Sequence[float | None]
                                 ) -> dict[str, Any]:
    """MOSI/MOSEI: acc-2 (negative < 0 <= positive), acc-7, MAE and Pearson r of the scores."""
    pairs = [(g, p) for g, p in zip(gold_scores, predicted_scores, strict=True) if p is not None]
    n_failed = len(gold_scores) - len(pairs)
    if not pairs:
        return {"n": len(gold_scores), "n_failed": n_failed}
    g = np.array([x for x, _ in pairs], dtype=float)
    p = np.array([y for _, y in pairs], dtype=float)
    total = len(gold_scores)
    return {
        "n": total, "n_failed": n_failed,
        "acc2": float(np.sum((g >= 0) == (p >= 0)) / total),
        "acc7": float(np.sum(np.clip(np.round(g), -3, 3) == np.clip(np.round(p), -3, 3)) / total),
        "mae": float(np.mean(np.abs(g - p))),
        "corr": float(np.corrcoef(g, p)[0, 1]) if len(pairs) > 1 and g.std() > 0 and p.std() > 0 else None,
    }
