"""Self-consistency: several sampled answers per sample, one vote per task; a wrapper over any
strategy that can draw (strategies.base.Draws).

The voted label is the most frequent one (ties go to the higher mean probability, then to the
earlier draw); label probabilities are the mean over the draws that have them; the agreement
rate is the share of answered draws that chose the voted label.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from mllm_mer.core.types import LabelSet, Prediction, TaskPrediction, extras_of
from mllm_mer.stages.prepare import Prepared
from mllm_mer.stages.requests import Flow, Together
from mllm_mer.stages.scoring import add_probabilities, disagreement_note, most_probable, probabilities_flow
from mllm_mer.strategies.base import BaseStrategy, Draws, RunContext, Strategy


def mean_probabilities(draws: Sequence[Prediction], task: str) -> dict[str, float] | None:
    tables = [d.tasks[task].probabilities for d in draws if task in d.tasks and d.tasks[task].probabilities]
    if not tables:
        return None
    return {label: sum(t.get(label, 0.0) for t in tables) / len(tables) for label in tables[0]}


def vote(draws: Sequence[Prediction], label_sets: Sequence[LabelSet], temperature: float) -> Prediction:
    """One prediction from a sample's draws (which all share its id)."""
    answered = [d for d in draws if d.ok]
    record = {"n": len(draws), "temperature": temperature,
              "labels": [{t: tp.label for t, tp in d.tasks.items()} if d.ok else None for d in draws]}
    if any(d.reasoning for d in draws):  # every reasoning path, beside the label it led to
        record["reasoning"] = [d.reasoning for d in draws]
    if not answered:
        failed = draws[0]
        failed.extras["consistency"] = record
        return failed
    tasks, agreement = {}, {}
    for ls in label_sets:
        counts = Counter(d.label(ls.task) for d in answered if d.label(ls.task))
        if not counts:
            continue
        probabilities = mean_probabilities(answered, ls.task)
        first_seen = {label: i for i, label in reversed(list(enumerate(d.label(ls.task) for d in answered)))}
        winner = max(counts, key=lambda label: (counts[label], (probabilities or {}).get(label, 0.0),
                                                -first_seen[label]))
        tasks[ls.task] = TaskPrediction(label=winner, probabilities=probabilities)
        agreement[ls.task] = counts[winner] / len(answered)
    record["agreement"] = agreement
    # The rationale and trace of the first draw that agrees with the whole vote (else the first answered).
    chosen = next((d for d in answered if all(d.label(t) == tp.label for t, tp in tasks.items())), answered[0])
    notes = list(chosen.notes)
    for task, tp in tasks.items():  # the draws' mean distribution may favour a label fewer draws chose
        if tp.probabilities and tp.label != (top := most_probable(tp)):
            notes.append(disagreement_note(task, tp.label, tp, "the vote of sampled answers (sampled, not the "
                                                               "most probable)"))
            record.setdefault("most_probable", {})[task] = top
    return Prediction(sample_id=chosen.sample_id, tasks=tasks, rationale=chosen.rationale, cues=chosen.cues,
                      raw=chosen.raw, notes=notes, extras={**chosen.extras, "consistency": record},
                      reasoning=chosen.reasoning)


class SelfConsistency(BaseStrategy):
    """`draws` sampled answers per sample from the inner strategy, voted per task."""

    def __init__(self, inner: Strategy, draws: int, temperature: float):
        if not isinstance(inner, Draws):
            raise ValueError(f"--samples {draws}: the {inner.name} strategy gives one deterministic answer per "
                             "sample, so there is nothing to draw and vote; leave --samples at 1")
        if temperature <= 0:
            raise ValueError("--samples above 1 draws different answers only with --temperature above 0")
        self.inner, self.draws, self.temperature = inner, draws, temperature
        self.name = inner.name
        self.reasons = getattr(inner, "reasons", False)

    def needs(self) -> frozenset[str]:
        return self.inner.needs()

    def check(self, mode: str) -> None:
        self.inner.check(mode)
        if not self.inner.can_draw(mode):
            raise ValueError("--samples needs generate mode: score mode has one deterministic answer per sample")

    def fingerprint(self) -> dict[str, Any]:
        return {**self.inner.fingerprint(), "samples": self.draws, "temperature": self.temperature}

    @classmethod
    def statistics(cls, records: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
        """Draws per sample and the mean agreement of the votes, per task."""
        votes = [v for r in records if (v := extras_of(r["prediction"]).get("consistency")) and v.get("agreement")]
        if not votes:
            return None
        tasks = sorted({task for v in votes for task in v["agreement"]})
        return {"draws_per_sample": votes[0]["n"],
                "mean_agreement": {t: sum(v["agreement"].get(t, 0.0) for v in votes) / len(votes) for t in tasks}}

    @classmethod
    def report_section(cls, stats: dict[str, Any]) -> list[str]:
        return ["", f"self-consistency: {stats['draws_per_sample']} draws per sample; mean agreement "
                + ", ".join(f"{t} {v:.2%}" for t, v in stats["mean_agreement"].items())]

    def can_stream(self, mode: str) -> bool:
        return self.inner.can_stream(mode)

    def flow(self, backend, prepared: Prepared, run: RunContext) -> Flow:
        """A sample's draws side by side (each its own flow), voted as `answer` votes them."""
        draws = yield Together([self.inner.draw_flow(backend, prepared, run, k, self.temperature)
                                for k in range(self.draws)])
        voted = vote(draws, prepared.prompt.label_sets, self.temperature)
        if run.probabilities and not self.inner.scores_draws and run.setup.reasoning is None:
            voted = yield from probabilities_flow(prepared.prompt, voted)
        return voted

    def answer(self, backend, ready: Sequence[Prepared], run: RunContext) -> list[Prediction]:
        draws = self.inner.draw(backend, ready, run, self.draws, self.temperature)
        voted = [vote(d, p.prompt.label_sets, self.temperature) for d, p in zip(draws, ready, strict=True)]
        if run.probabilities and not self.inner.scores_draws and run.setup.reasoning is None:
            add_probabilities(backend, [p.prompt for p in ready], voted, run.adapter, run.on_stage)
        return voted
