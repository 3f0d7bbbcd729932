"""Both answer orders on the same samples (`evaluate --compare-orders`): beside each reasoned answer, the
label-first (`--reasoning none`) label and distribution of the same sample, scored in the same run.

The label-first prompt is the one a `--reasoning none` run builds (same sample, media and demonstrations,
no reasoning block), so its distribution is what that run would score; it lives in the record as
`reasoning.label_first`, beside the reasoned answer.
"""
from __future__ import annotations

from collections.abc import Sequence

from mllm_mer.backends.base import Backend
from mllm_mer.core.types import Prediction, Prompt, PromptSetup, TaskPrediction
from mllm_mer.prompting import build_prompt
from mllm_mer.stages.prepare import Prepared, Stage, quiet
from mllm_mer.stages.requests import Flow
from mllm_mer.stages.scoring import score_flow, score_labels


def label_first_prompt(prepared: Prepared, setup: PromptSetup) -> Prompt:
    """The prompt a `--reasoning none` run gives this sample."""
    return build_prompt(prepared.sample, setup.scheme, setup.template, prepared.media, setup.modalities,
                        demonstrations=prepared.demonstrations, reasoning=None)


def add_label_first(backend: Backend, ready: Sequence[Prepared], predictions: Sequence[Prediction],
                    setup: PromptSetup, adapter: str | None = None, on_stage: Stage = quiet) -> None:
    """Each reasoned prediction gains `reasoning.label_first`: task -> {label, probabilities} scored on the
    label-first prompt (in place). A sample the backend refuses to score this way keeps its reasoned answer,
    with a note; a prediction that did not reason is left as it is."""
    owners = [i for i, p in enumerate(predictions) if p.reasoning is not None]
    if not owners:
        return
    on_stage(f"scoring the label-first answers of {len(owners)}")
    prompts = [label_first_prompt(ready[i], setup) for i in owners]
    for i, scored in zip(owners, score_labels(backend, prompts, adapter), strict=True):
        keep_label_first(predictions[i], scored)


def label_first_flow(prepared: Prepared, prediction: Prediction, setup: PromptSetup) -> Flow:
    """`add_label_first` for one reasoned prediction, as a flow."""
    keep_label_first(prediction, (yield from score_flow(label_first_prompt(prepared, setup))))


def keep_label_first(prediction: Prediction, scored: dict[str, TaskPrediction] | Exception) -> None:
    if isinstance(scored, Exception):
        prediction.notes.append(f"the label-first answer could not be scored: {scored}")
        return
    prediction.reasoning["label_first"] = {task: {"label": tp.label, "probabilities": tp.probabilities}
                                           for task, tp in scored.items()}
