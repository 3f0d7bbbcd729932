"""Selective prediction: the risk-coverage curve, its area (AURC), and abstention below a calibrated
probability. Pure functions.

Answers are ranked by their own probability; at coverage c the risk is the error rate of the most
confident c share. AURC is the mean risk over every coverage step (lower is better). An abstention is
counted apart from an error: it lowers coverage, not accuracy.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def risk_coverage(confidence: Sequence[float], correct: Sequence[bool]) -> dict[str, Any]:
    """Coverage and risk after each answer, most confident first; ties enter together."""
    conf = np.asarray(confidence, dtype=float)
    right = np.asarray(correct, dtype=bool)
    if conf.shape != right.shape or conf.size == 0:
        raise ValueError("confidence and correctness must be non-empty and of the same length")
    order = np.argsort(-conf, kind="stable")
    errors = np.cumsum(~right[order])
    counts = np.arange(1, conf.size + 1)
    # ties: every answer of one confidence enters at once, at the last index of its run
    last = np.r_[conf[order][1:] != conf[order][:-1], True]
    coverage, risk = counts[last] / conf.size, errors[last] / counts[last]
    area = float(np.sum(np.diff(np.r_[0.0, coverage]) * risk))  # each step weighted by the coverage it adds
    return {"coverage": coverage.tolist(), "risk": risk.tolist(), "aurc": area}


def abstention(confidence: Sequence[float], correct: Sequence[bool], threshold: float) -> dict[str, float]:
    """Answers below `threshold` abstain: coverage, selective accuracy over the rest, abstentions."""
    conf = np.asarray(confidence, dtype=float)
    right = np.asarray(correct, dtype=bool)
    kept = conf >= threshold
    return {"threshold": float(threshold), "coverage": float(kept.mean()) if conf.size else 0.0,
            "abstained": int((~kept).sum()),
            "selective_accuracy": float(right[kept].mean()) if kept.any() else None}  # None: every answer abstained


def selective_metrics(probs: np.ndarray, gold: np.ndarray, abstain_below: float | None = None) -> dict[str, Any]:
    """AURC and the risk-coverage curve (at most 101 points) of the top label of each distribution;
    with `abstain_below`, the abstention summary at that threshold."""
    if len(gold) == 0:
        return {}
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == gold
    curve = risk_coverage(confidence, correct)
    keep = np.unique(np.linspace(0, len(curve["coverage"]) - 1, min(101, len(curve["coverage"]))).astype(int))
    found: dict[str, Any] = {"aurc": curve["aurc"], "risk_coverage": {
        "coverage": [curve["coverage"][i] for i in keep], "risk": [curve["risk"][i] for i in keep]}}
    if abstain_below is not None:
        found["abstention"] = abstention(confidence, correct, abstain_below)
    return found
