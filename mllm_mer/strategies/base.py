"""The interface floor of strategies: what a strategy is, what a run gives it, and how one is built.

A strategy answers a batch of prepared samples in a run context. It says what it needs from the
run (`needs`: the demonstration index, the dialogue history), refuses a mode it cannot serve
(`check`), and names the settings that change its answers (`fingerprint`, kept with a run so that
a resumed run cannot silently change them). Optional capabilities:

- `Draws`: it can draw several sampled answers per sample, so self-consistency can vote over them;
- `can_stream(mode)`: it describes each sample's requests as a flow (`flow`, `stages.requests`), so a
  continuous scheduler sends each the moment it can go; a strategy whose requests are all label scorings
  only names them (`scores_only`, `scorings`, `from_scorings`) and gets its flow from here.

A strategy owns what it adds to an answer: `Prediction.extras[name]` (the agent's trace, fusion's experts),
and how a run reports it (`statistics` over the run's records -> its metrics.json entry, `report_section`
-> its part of report.md, `summary_lines` -> its lines in the run's summary); `strategies.reporting`
finds them through the registry.

Strategies are registered by name as data (`core.registry.STRATEGIES`); `strategies.build_strategy` is
the one place that builds one from its name, and self-consistency is one wrapper over any strategy that draws.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from mllm_mer.core.registry import STRATEGIES, load_entry, lookup
from mllm_mer.core.types import Prediction, Prompt, PromptSetup
from mllm_mer.stages.prepare import Prepared, Stage, quiet
from mllm_mer.stages.requests import Flow, Together
from mllm_mer.stages.resources import Resources
from mllm_mer.stages.scoring import score_flow


@dataclass
class RunContext:
    """What one run gives every strategy call, beside the backend and the prepared samples."""

    setup: PromptSetup
    strategy: Strategy | None = None  # None: single
    adapter: str | None = None  # the adapter name each request uses
    probabilities: bool = True  # generate mode: also score label probabilities
    on_stage: Stage = quiet  # progress
    resources: Resources = field(default_factory=Resources)  # demonstration index, dialogue history
    compare_orders: bool = False  # a reasoned answer also gets the label-first one (evaluate --compare-orders)
    faithfulness: bool = False  # each answer re-scored without each modality (evaluate --faithfulness)

    def __post_init__(self) -> None:
        if self.strategy is None:
            self.strategy = single()


@runtime_checkable
class Strategy(Protocol):
    name: ClassVar[str]
    reasons_once: ClassVar[bool]  # one reasoning per sample, then its answer (the app shows it first)

    def needs(self) -> frozenset[str]:
        """What it reads from the run's resources (of stages.resources.NEEDS)."""
        ...

    def check(self, mode: str) -> None:
        """ValueError with a one-line reason when it cannot run in this mode."""
        ...

    def can_stream(self, mode: str) -> bool:
        """True: `flow` describes a sample's requests in this mode."""
        ...

    def scores_only(self, mode: str) -> bool:
        """True: every request it makes in this mode is a label scoring, named per sample by `scorings`, and
        the sample's prediction is built from their results by `from_scorings` (so a stream can send each
        scoring the moment it can go)."""
        ...

    def fingerprint(self) -> dict[str, Any]:
        ...

    def answer(self, backend, ready: Sequence[Prepared], run: RunContext) -> list[Prediction]:
        """One prediction per ready sample (each has a prompt), in input order."""
        ...


@runtime_checkable
class Draws(Protocol):
    """A strategy that can draw `n` sampled answers per sample (for self-consistency)."""

    # True: each draw carries label probabilities (averaged by the vote); False: the voted labels
    # are scored once, on the sample's prompt.
    scores_draws: ClassVar[bool]

    def can_draw(self, mode: str) -> bool:
        ...

    def draw(self, backend, ready: Sequence[Prepared], run: RunContext, n: int, temperature: float
             ) -> list[list[Prediction]]:
        ...

    def draw_flow(self, backend, prepared: Prepared, run: RunContext, k: int, temperature: float) -> Flow:
        """Draw `k` of one sample (seeded from `k`), as `draw` makes it, as a flow."""
        ...


class BaseStrategy:
    """Defaults for the optional parts of the protocol."""

    name: ClassVar[str] = ""
    reasons: ClassVar[bool] = False  # True: it runs the reasoning stage (--reasoning before|native)
    reasons_once: ClassVar[bool] = False  # True: one reasoning per sample, then its answer (shown first in the app)

    def needs(self) -> frozenset[str]:
        return frozenset()

    def check(self, mode: str) -> None:
        return None

    def can_stream(self, mode: str) -> bool:
        return False

    def scores_only(self, mode: str) -> bool:
        return False

    def scorings(self, prepared: Prepared, run: RunContext) -> list[tuple[str, Prompt]]:
        """Where `scores_only`: the sample's label scorings, by name."""
        raise NotImplementedError(f"the {self.name} strategy does not answer by label scorings alone")

    def from_scorings(self, prepared: Prepared, scored: dict[str, Any], run: RunContext) -> Prediction:
        """Where `scores_only`: the sample's prediction from each scoring's tasks (or the error it met)."""
        raise NotImplementedError(f"the {self.name} strategy does not answer by label scorings alone")

    def flow(self, backend, prepared: Prepared, run: RunContext) -> Flow:
        """Where `can_stream`: one sample's requests and its prediction (here: every scoring side by side,
        each task after task, for a strategy that `scores_only`)."""
        if not self.scores_only(run.setup.mode):
            raise NotImplementedError(f"the {self.name} strategy answers in batches only")
        names, prompts = zip(*self.scorings(prepared, run), strict=True)
        results = yield Together([score_flow(prompt) for prompt in prompts])
        return self.from_scorings(prepared, dict(zip(names, results, strict=True)), run)

    def fingerprint(self) -> dict[str, Any]:
        return {"strategy": self.name}

    @classmethod
    def statistics(cls, records: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
        """Its metrics.json entry over a run's records (predictions.jsonl rows); None: nothing to report."""
        return None

    @classmethod
    def report_section(cls, stats: dict[str, Any]) -> list[str]:
        """Its Markdown lines under the report's "Strategy" heading, from its `statistics`."""
        return []

    @classmethod
    def summary_lines(cls, stats: dict[str, Any]) -> list[str]:
        """Its lines in the summary printed after a run and atop report.md."""
        return []


def strategy_class(name: str) -> type:
    return load_entry(lookup(STRATEGIES, name, "strategy"))


def single() -> Strategy:
    return strategy_class("single")()
