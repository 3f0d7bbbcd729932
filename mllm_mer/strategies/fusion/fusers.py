"""Fusers: the experts' label distributions for one task -> one distribution (core.registry.FUSERS).

- `mean`: the average distribution;
- `product`: the normalised product (product of experts);
- `entropy`: a weighted average where each expert's weight is its certainty (log K minus its
  entropy), per sample, so confident modalities weigh more (adaptive, no training; in the spirit of
  TACFN's adaptive cross-modal fusion);
- `gate`: a learned gate (`fusion.gate`), fitted on a dev run.

A missing expert (its modality absent) is left out by every fuser; the gate sees it as absent.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

from mllm_mer.core.registry import FUSERS, load_entry, lookup

FLOOR = 1e-9


def _normalised(weights: dict[str, float]) -> dict[str, float]:
    total = sum(weights.values())
    return {k: v / total for k, v in weights.items()}


def fuse_mean(experts: dict[str, dict[str, float]], labels: Sequence[str], gate=None) -> dict[str, float]:
    return _normalised({label: sum(e.get(label, 0.0) for e in experts.values()) for label in labels})


def fuse_product(experts: dict[str, dict[str, float]], labels: Sequence[str], gate=None) -> dict[str, float]:
    logs = {label: sum(math.log(max(e.get(label, 0.0), FLOOR)) for e in experts.values()) for label in labels}
    top = max(logs.values())
    return _normalised({label: math.exp(v - top) for label, v in logs.items()})


def fuse_entropy(experts: dict[str, dict[str, float]], labels: Sequence[str], gate=None) -> dict[str, float]:
    most = math.log(len(labels))
    certainty = {name: most + sum(p * math.log(max(p, FLOOR)) for p in e.values()) + 1e-6
                 for name, e in experts.items()}
    weights = _normalised(certainty)
    return _normalised({label: sum(weights[n] * e.get(label, 0.0) for n, e in experts.items()) for label in labels})


def fuse_gate(experts: dict[str, dict[str, float]], labels: Sequence[str], gate=None) -> dict[str, float]:
    if gate is None:
        raise ValueError("the gate fuser needs a fitted gate: --fusion fusion.json (from `mllm-mer fit-fusion`)")
    return gate.predict(experts)


def fuse(experts: dict[str, dict[str, float]], fuser: str, labels: Sequence[str], gate=None) -> dict[str, float]:
    """One distribution over `labels` from the experts present ({expert: {label: p}})."""
    if not experts:
        raise ValueError("no expert to fuse")
    return load_entry(lookup(FUSERS, fuser, "fuser"))(experts, labels, gate)
