"""Composes the stages: sample -> media -> prompt -> the run's strategy over the backend -> Prediction.

Every entry point (CLI, app, evaluate, training, benchmarks) calls these functions; none
re-implements a stage. A sample whose media fails becomes a failed Prediction with the reason,
and the rest of the batch goes on.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mllm_mer.backends.base import Backend
from mllm_mer.core.types import Prediction, Prompt, PromptSetup, Sample
from mllm_mer.stages.calibration import calibrate
from mllm_mer.stages.faithfulness import add_removals
from mllm_mer.stages.orders import add_label_first
from mllm_mer.stages.prepare import Prepared, Stage, prepare, quiet
from mllm_mer.stages.resources import Resources
from mllm_mer.strategies import RunContext, Strategy


@dataclass
class Answered:
    """A sample's prompt (None when it could not get one) and its prediction."""

    prompt: Prompt | None
    prediction: Prediction


def run_context(setup: PromptSetup, strategy: Strategy | None = None, adapter: str | None = None,
                with_probabilities: bool = True, on_stage: Stage = quiet, resources: Resources | None = None
                ) -> RunContext:
    return RunContext(setup, strategy, adapter, with_probabilities, on_stage, resources or Resources())


def answer_run(backend: Backend, samples: Sequence[Sample], run: RunContext) -> list[Answered]:
    """The whole path for a batch of samples, by the run's strategy; one Answered per sample, in input order."""
    return answer_prepared(backend, prepare(samples, run.setup, run.on_stage, run.resources), run)


def answer_prepared(backend: Backend, prepared: Sequence[Prepared], run: RunContext) -> list[Answered]:
    """`answer_run` from the media stage on: the strategy over the samples that got a prompt, in input order."""
    ready = [p for p in prepared if p.prompt is not None]
    predictions = run.strategy.answer(backend, ready, run) if ready else []
    if run.compare_orders:
        add_label_first(backend, ready, predictions, run.setup, run.adapter, run.on_stage)
    if run.faithfulness:
        add_removals(backend, ready, predictions, run.setup, run.adapter, run.on_stage)
    answered = iter(predictions)
    return [finish(p, next(answered) if p.prompt is not None else None, run.setup) for p in prepared]


def finish(prepared: Prepared, prediction: Prediction | None, setup: PromptSetup) -> Answered:
    """The sample's notes on its prediction (a failure when it got no prompt), calibrated if asked."""
    if prediction is None:
        prediction = Prediction.failure(prepared.sample.id, prepared.error or "no prompt", kind=prepared.error_kind)
    prediction.notes = prepared.notes + prediction.notes
    if setup.temperatures:
        calibrate(prediction, setup.temperatures)
    return Answered(prepared.prompt, prediction)


def answer(backend: Backend, samples: Sequence[Sample], setup: PromptSetup, adapter: str | None = None,
           with_probabilities: bool = True, on_stage: Stage = quiet, strategy: Strategy | None = None,
           resources: Resources | None = None) -> list[Answered]:
    """`answer_run` with the run context spelled out (single strategy unless given)."""
    return answer_run(backend, samples, run_context(setup, strategy, adapter, with_probabilities, on_stage,
                                                    resources))


def predict(backend: Backend, samples: Sequence[Sample], setup: PromptSetup, adapter: str | None = None,
            with_probabilities: bool = True, strategy: Strategy | None = None, resources: Resources | None = None
            ) -> list[Prediction]:
    """Predictions only (see `answer`)."""
    return [a.prediction for a in answer(backend, samples, setup, adapter, with_probabilities, strategy=strategy,
                                         resources=resources)]
