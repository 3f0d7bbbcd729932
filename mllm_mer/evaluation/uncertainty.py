"""How sure a number is: seeded bootstrap intervals (whole dialogues resampled where a dataset has
them) and paired tests between two runs over the same samples. Pure functions over numpy/scipy.

Every resample is a vector of sample weights (how often each sample was drawn), so a statistic is a
function of weights: a weighted confusion matrix gives accuracy, F1 and UAR without re-running
scikit-learn a thousand times. The point estimates use the same formulas with unit weights.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

N_RESAMPLES = 1000
SEED = 0
LEVEL = 0.95
NOTE = (f"95% intervals: percentile bootstrap, {N_RESAMPLES} seeded resamples (seed {SEED}) of whole dialogues "
        "where the data has them, else of samples; estimates, not exact bounds")

Stat = Callable[[np.ndarray], dict[str, float]]


def group_ids(groups: Sequence[Any] | None, n: int) -> np.ndarray:
    """Each sample's group as 0..G-1 (its dialogue; a sample without one is a group of its own)."""
    if groups is None:
        return np.arange(n)
    codes: dict[Any, int] = {}
    return np.array([codes.setdefault(("g", g) if g is not None else ("s", i), len(codes))
                     for i, g in enumerate(groups)], dtype=int)


def resample_weights(groups: np.ndarray, n_resamples: int = N_RESAMPLES, seed: int = SEED) -> np.ndarray:
    """(n_resamples x N) weights: groups drawn with replacement, each sample weighted by its group's draws."""
    n_groups = int(groups.max()) + 1 if len(groups) else 0
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n_groups, np.full(n_groups, 1.0 / n_groups), size=n_resamples) if n_groups else \
        np.zeros((n_resamples, 0))
    return draws[:, groups].astype(float)


def intervals(stat: Stat, weights: np.ndarray, level: float = LEVEL) -> dict[str, list[float]]:
    """Percentile interval of each value `stat(weights)` returns, over the resamples."""
    values: dict[str, list[float]] = {}
    for w in weights:
        for key, value in stat(w).items():
            values.setdefault(key, []).append(value)
    tail = (1 - level) / 2 * 100
    return {k: [float(np.percentile(v, tail)), float(np.percentile(v, 100 - tail))] for k, v in values.items()}


def confusion_stat(gold: np.ndarray, pred: np.ndarray, k: int, present: np.ndarray) -> Stat:
    """Accuracy, weighted/macro F1 and UAR over the classes `present` (gold indices 0..k-1; a prediction
    index k or more is a wrong answer outside the classes)."""
    cells = gold * (k + 1) + np.minimum(pred, k)

    def stat(w: np.ndarray) -> dict[str, float]:
        matrix = np.bincount(cells, weights=w, minlength=k * (k + 1)).reshape(k, k + 1)
        total = matrix.sum()
        tp = np.diag(matrix[:, :k])
        support = matrix.sum(axis=1)
        predicted = matrix[:, :k].sum(axis=0)
        precision = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)
        recall = np.divide(tp, support, out=np.zeros(k), where=support > 0)
        f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(k), where=precision + recall > 0)
        shown = present & (support > 0)
        if total == 0 or not shown.any():
            return {"accuracy": 0.0, "weighted_f1": 0.0, "macro_f1": 0.0, "uar": 0.0}
        return {"accuracy": float(tp.sum() / total),
                "weighted_f1": float(np.sum(f1[shown] * support[shown]) / support[shown].sum()),
                "macro_f1": float(f1[present].mean()), "uar": float(recall[shown].mean())}

    return stat


def classification_intervals(gold: Sequence[str], predicted: Sequence[str | None], labels: Sequence[str],
                             groups: Sequence[Any] | None = None) -> dict[str, list[float]]:
    """Bootstrap intervals of accuracy, weighted/macro F1 and UAR (a failed answer counts as wrong)."""
    index = {label: i for i, label in enumerate(labels)}
    k = len(labels)
    g = np.array([index[x] for x in gold], dtype=int)
    p = np.array([index.get(x, k) if x is not None else k for x in predicted], dtype=int)
    present = np.isin(np.arange(k), g)
    return intervals(confusion_stat(g, p, k, present), resample_weights(group_ids(groups, len(g))))


def mean_stat(columns: dict[str, np.ndarray]) -> Stat:
    """Weighted means of per-sample values (hit rate, per-sample precision and recall)."""
    def stat(w: np.ndarray) -> dict[str, float]:
        total = w.sum()
        return {k: float(w @ v / total) if total else 0.0 for k, v in columns.items()}

    return stat


def mcnemar(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> dict[str, Any]:
    """Exact McNemar test: the discordant pairs against a fair coin (scipy's binomial test)."""
    from scipy.stats import binomtest

    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    p = 1.0 if only_a + only_b == 0 else float(binomtest(only_a, only_a + only_b, 0.5).pvalue)
    return {"only_a_right": only_a, "only_b_right": only_b, "p_value": p}


def paired_bootstrap(stat_a: Stat, stat_b: Stat, key: str, groups: np.ndarray) -> dict[str, Any]:
    """The difference b - a of one statistic: its point value, 95% interval over paired resamples, and
    a two-sided bootstrap p-value (how often the resampled difference falls on the other side of 0)."""
    weights = resample_weights(groups)
    ones = np.ones(len(groups))
    point = stat_b(ones)[key] - stat_a(ones)[key]
    diffs = np.array([stat_b(w)[key] - stat_a(w)[key] for w in weights])
    p = min(1.0, 2 * min(np.mean(diffs <= 0), np.mean(diffs >= 0)))
    return {"difference": float(point), "interval": [float(np.percentile(diffs, 2.5)),
                                                      float(np.percentile(diffs, 97.5))], "p_value": float(p)}
