"""Fusion's experts: one scored prompt per subset of the sample's modalities, and their names."""
from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

MODALITY_ORDER = ("text", "video", "audio")
JOINT = "joint"
GATE_EXPERTS = (*MODALITY_ORDER, JOINT)  # the gate's input slots
FUSED = frozenset(GATE_EXPERTS)  # what fusers combine (an ablation's other subsets are reported, not fused)


def expert_name(modalities: Sequence[str]) -> str:
    return "+".join(m for m in MODALITY_ORDER if m in modalities)


def expert_subsets(present: Sequence[str], every_subset: bool = False) -> dict[str, tuple[str, ...]]:
    """The experts of a sample: each present modality alone and the joint prompt (or, for an ablation,
    every non-empty subset of the present modalities); name -> modalities."""
    present = tuple(m for m in MODALITY_ORDER if m in present)
    sizes = range(1, len(present)) if every_subset else (1,)  # all of them together is the joint prompt
    experts = {expert_name(c): c for size in sizes for c in combinations(present, size) if len(present) > 1}
    experts[JOINT] = present
    return experts
