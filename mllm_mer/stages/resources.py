"""What a run's prompts and strategies may read besides the sample: the demonstration index and
the dialogue history. Built once per run (`pipeline.resources.build_resources`)."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mllm_mer.core.types import Turn
from mllm_mer.prompting import needs_demonstrations

# What a strategy or template may need from the run beyond its samples.
NEEDS = ("index", "history")


def needed(template: str, strategy_needs: Iterable[str] = ()) -> frozenset[str]:
    """What a run reads beyond its samples: its strategy's needs, and the index where its template shows
    retrieved demonstrations."""
    return frozenset(strategy_needs) | ({"index"} if needs_demonstrations(template) else frozenset())


@dataclass
class Resources:
    index: Any = None  # stages.retrieval.DemonstrationIndex, for `recall` and the `retrieved` template
    source: str | None = None  # the split the samples come from (the index leaves their rows out)
    history: Mapping[str, tuple[Turn, ...]] = field(default_factory=dict)  # sample id -> all earlier turns
