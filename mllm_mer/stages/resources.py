"""What a run's prompts and strategies may read besides the sample: the demonstration index and
the dialogue history. Built once per run (`pipeline.resources.build_resources`)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mllm_mer.core.types import Turn

# What a strategy or template may need from the run beyond its samples (Strategy.needs, PromptSetup.needs).
NEEDS = ("index", "history")


@dataclass
class Resources:
    index: Any = None  # prompting.demonstrations.DemonstrationIndex, for `recall` and the `retrieved` template
    source: str | None = None  # the split the samples come from (the index leaves their rows out)
    history: Mapping[str, tuple[Turn, ...]] = field(default_factory=dict)  # sample id -> all earlier turns
