"""Fusion's experts: one scored prompt per subset of the sample's modalities, and their names."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from itertools import combinations
from typing import Any

from mllm_mer.core.types import MODALITIES, extras_of

MODALITY_ORDER = MODALITIES
JOINT = "joint"
GATE_EXPERTS = (*MODALITY_ORDER, JOINT)  # the gate's input slots
FUSED = frozenset(GATE_EXPERTS)  # what fusers combine (an ablation's other subsets are reported, not fused)
# A model that hears gets the sound two ways, the waveform and the cue text; an ablation scores each
# alone so that a user sees what hearing adds over reading the cues.
HEARD, CUE_TEXT = "audio:heard", "audio:cue_text"


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


def hearing_experts(sample: Any, media: Any) -> dict[str, tuple[Any, Any]]:
    """For a sample heard as a waveform and described in cue text: name -> (sample, media) of the
    audio-only prompt with the waveform alone and with the cue text alone; empty otherwise."""
    if media.audio is None or not (media.vocal_cues or sample.vocal_cues):
        return {}
    return {HEARD: (replace(sample, vocal_cues=None), replace(media, vocal_cues=None, vocal_features=None)),
            CUE_TEXT: (sample, replace(media, audio=None))}


def subset_of(name: str) -> list[str] | None:
    """The modalities an expert's name stands for; None for the joint prompt and the hearing split."""
    return None if name == JOINT or ":" in name else name.split("+")


def expert_order(name: str) -> tuple:
    """Single modalities first, then pairs, ..., the hearing split after audio, the joint prompt last."""
    parts = subset_of(name.split(":")[0]) or []
    return (name == JOINT, len(parts), [MODALITY_ORDER.index(m) for m in parts], name)


def experts_of(record: dict[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    """A predictions.jsonl record's experts (expert -> task -> label distribution; {} for another strategy)."""
    return (extras_of(record["prediction"]).get("fusion") or {}).get("experts") or {}
