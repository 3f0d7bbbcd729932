"""What a strategy asks of a backend, as data: a sample's answer is a *flow*, a generator that yields
requests and receives their results, and returns the sample's prediction.

A flow says what it needs next and nothing about when it runs: the continuous scheduler
(`pipeline.inflight`) sends each request the moment the flow yields it, so one sample's next step (its
next agent action, its scoring after its reasoning, its next draw) never waits for another sample's. A
result is what the backend gave, or the input error it met (the flow decides what that sample makes of it).

- `Ask`: a constrained answer under the prompt's schema (after its thought, when it has one) -> the text;
- `Think`: the prompt's reasoning block, unconstrained and bounded -> a `Thought`;
- `Score`: the log-probabilities of candidate answer texts -> a list of floats;
- `Together`: flows run side by side (a sample's experts, its draws) -> the list of their results.
"""
from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

from mllm_mer.core.types import Prompt


@dataclass(frozen=True)
class Ask:
    prompt: Prompt
    temperature: float = 0.0
    seed: int | None = None


@dataclass(frozen=True)
class Think:
    prompt: Prompt
    temperature: float = 0.0
    seed: int | None = None


@dataclass(frozen=True)
class Score:
    prompt: Prompt
    texts: Sequence[str]


@dataclass(frozen=True)
class Together:
    flows: Sequence[Flow]


Request = Ask | Think | Score | Together
Flow = Generator[Request, Any, Any]


def constant(value: Any) -> Flow:
    """A flow that asks nothing and gives `value` (a step that is already decided)."""
    return value
    yield  # a generator: the line after the return makes it one
