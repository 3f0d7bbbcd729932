"""Modality fusion over per-modality experts: late fusion of label distributions.

An expert is one scored prompt over a subset of the sample's modalities (text only, frames only,
vocal cues only, and the joint prompt; for a model that hears, an ablation also scores the
waveform alone and the cue text alone), built from the same decoded media; each gives a label
distribution per task. A fuser (`fusers`, registered in core.registry.FUSERS) turns the experts
present for a sample into one distribution; `gate` is the learned one.
"""
from mllm_mer.core.registry import FUSERS
from mllm_mer.strategies.fusion.experts import (
                                               CUE_TEXT,
                                               FUSED,
                                               GATE_EXPERTS,
                                               HEARD,
                                               JOINT,
                                               MODALITY_ORDER,
                                               expert_name,
                                               expert_order,
                                               expert_subsets,
                                               experts_of,
                                               subset_of,
)
from mllm_mer.strategies.fusion.fusers import fuse
from mllm_mer.strategies.fusion.gate import Gate, TaskGate, fit_gate, load_gate
from mllm_mer.strategies.fusion.strategy import Fusion

__all__ = ["CUE_TEXT", "FUSED", "FUSERS", "GATE_EXPERTS", "HEARD", "JOINT", "MODALITY_ORDER", "Fusion", "Gate",
           "TaskGate", "expert_name", "expert_order", "expert_subsets", "experts_of", "fit_gate", "fuse", "load_gate",
           "subset_of"]
