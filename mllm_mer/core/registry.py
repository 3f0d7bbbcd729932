"""Every pluggable part, registered by name as data on the lowest floor.

An entry is a lazy `"module:attr"` string (as lm-evaluation-harness registers models and vLLM
registers architectures): nothing is imported until the part is used, and a new strategy,
backend, fuser or dataset loader is one line here plus its module, never a new `elif`. The
config's allowed names, the CLI's choices, the app's dropdowns and `mllm-mer ls` read these.
"""
from __future__ import annotations

import importlib
from typing import Any

# How the model reaches its answer (mllm_mer.strategies); self-consistency wraps any that can draw.
STRATEGIES: dict[str, str] = {
    "single": "mllm_mer.strategies.single:Single",
    "agent": "mllm_mer.strategies.agent:Agent",
    "fusion": "mllm_mer.strategies.fusion:Fusion",
}

# Wrappers over any strategy that draws; registered for their answers' extras and report sections.
STRATEGY_WRAPPERS: dict[str, str] = {
    "consistency": "mllm_mer.strategies.consistency:SelfConsistency",
}

# Who runs the model (mllm_mer.backends).
BACKENDS: dict[str, str] = {
    "transformers": "mllm_mer.backends.hf:TransformersBackend",
    "vllm": "mllm_mer.backends.vllm_engine:VLLMEngineBackend",
    "openai": "mllm_mer.backends.openai_client:OpenAIBackend",
}

# How fusion turns the experts' label distributions into one (mllm_mer.strategies.fusion).
FUSERS: dict[str, str] = {
    "mean": "mllm_mer.strategies.fusion.fusers:fuse_mean",
    "product": "mllm_mer.strategies.fusion.fusers:fuse_product",
    "entropy": "mllm_mer.strategies.fusion.fusers:fuse_entropy",
    "gate": "mllm_mer.strategies.fusion.fusers:fuse_gate",
}

# How `finetune` trains an adapter (mllm_mer.training): the recipe's `method`.
TRAINING_METHODS: dict[str, str] = {
    "sft": "mllm_mer.training.sft:train",
    "grpo": "mllm_mer.training.grpo:train",
}
# A method's checks of its recipe, light to import: run before the method's (heavy) module is imported.
TRAINING_CHECKS: dict[str, str] = {
    "grpo": "mllm_mer.training.grpo_recipe:check_recipe",
}

# Benchmark loaders (mllm_mer.datasets): name -> (loader module, fixed keywords of its `load`).
DATASETS: dict[str, tuple[str, dict[str, Any]]] = {
    "meld": ("mllm_mer.datasets.meld", {}),
    "iemocap": ("mllm_mer.datasets.iemocap", {"ways": 6}),
    "iemocap4": ("mllm_mer.datasets.iemocap", {"ways": 4}),
    "mer2024": ("mllm_mer.datasets.mer2024", {}),
    "ravdess": ("mllm_mer.datasets.ravdess", {}),
    "mosi": ("mllm_mer.datasets.mosi", {"classes": 2}),
    "mosei": ("mllm_mer.datasets.mosi", {"classes": 2}),
    "mosi7": ("mllm_mer.datasets.mosi", {"classes": 7}),
    "mosei7": ("mllm_mer.datasets.mosi", {"classes": 7}),
    "wesad": ("mllm_mer.datasets.wesad", {}),
    "deap": ("mllm_mer.datasets.deap", {}),
    "manifest": ("mllm_mer.datasets.manifest", {}),
    "distilled": ("mllm_mer.datasets.distilled", {}),
}


def load_entry(entry: str) -> Any:
    """The object a `"module:attr"` entry names (imported now)."""
    module, _, attr = entry.partition(":")
    found = importlib.import_module(module)
    return getattr(found, attr) if attr else found


def lookup(registry: dict[str, Any], name: str, what: str) -> Any:
    """`registry[name]`, or a ValueError that lists the choices."""
    if name not in registry:
        raise ValueError(f"unknown {what} {name!r}; choose from {', '.join(registry)}")
    return registry[name]
