"""Composes the stages: sample -> media -> prompt -> backend -> parse (-> label probabilities).

Every entry point (CLI, app, evaluate, training, benchmarks) calls these functions;
none re-implements a stage. A sample whose media fails becomes a failed Prediction with
the reason, and the rest of the batch goes on.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from mllm_mer.backends.base import Backend
from mllm_mer.media import MediaError, load_media
from mllm_mer.parsing import parse_answer
from mllm_mer.prompting import answer_prefix, build_prompt
from mllm_mer.types import MediaInputs, Prediction, Prompt, PromptSetup, Sample, TaskPrediction


@dataclass
class Prepared:
    """A sample made ready for a backend: its prompt, or why it could not get one."""

    sample: Sample
    prompt: Prompt | None = None
    error: str | None = None


def has_evidence(sample: Sample, media: MediaInputs, modalities: Sequence[str]) -> bool:
    """Whether anything is left to classify once absent and ablated modalities are gone."""
    text = "text" in modalities and bool((sample.transcript or media.transcript or "").strip())
    visual = "video" in modalities and bool(media.frames or media.image is not None)
    vocal = "audio" in modalities and bool(media.vocal_cues or sample.vocal_cues)
    return text or visual or vocal


def prepare(samples: Sequence[Sample], setup: PromptSetup) -> list[Prepared]:
    """Media and prompt for each sample; a sample that cannot get one keeps the reason."""
    prepared = []
    for sample in samples:
        try:
            inputs = load_media(sample, setup.media, modalities=setup.modalities)
        except MediaError as error:
            prepared.append(Prepared(sample, error=str(error)))
            continue
        if not has_evidence(sample, inputs, setup.modalities):
            prepared.append(Prepared(sample, error="no usable input: empty transcript and no media "
                                                   f"(modalities {', '.join(setup.modalities)})"))
            continue
        prompt = build_prompt(sample, setup.scheme, setup.template, inputs, setup.modalities)
        prepared.append(Prepared(sample, prompt))
    return prepared


def score_labels(backend: Backend, prompts: Sequence[Prompt], adapter: str | None = None,
                 fixed: Sequence[dict[str, str]] | None = None) -> list[dict[str, TaskPrediction]]:
    """Label probabilities per task, as a decoder constrained to the label set would choose the answer's value.

    Tasks are scored in answer order; each later task is conditioned on the labels
    already in the answer (`fixed`, e.g. generated ones) or else on the most probable
    label of the earlier tasks. One batched backend call per task.
    """
    results: list[dict[str, TaskPrediction]] = [{} for _ in prompts]
    chosen: list[dict[str, str]] = [{} for _ in prompts]
    for k in range(max((len(p.label_sets) for p in prompts), default=0)):
        owners = [i for i, p in enumerate(prompts) if k < len(p.label_sets)]
        requests = []
        for i in owners:
            ls = prompts[i].label_sets[k]
            prefix = answer_prefix(chosen[i], ls.task)
            requests.append((prompts[i], [prefix + label + '"' for label in ls.labels]))
        for i, logps in zip(owners, backend.score(requests, adapter=adapter), strict=True):
            ls = prompts[i].label_sets[k]
            # The log-probabilities already form a distribution; normalising again only absorbs rounding.
            top = max(logps)
            weights = [math.exp(v - top) for v in logps]
            total = sum(weights)
            probs = {label: w / total for label, w in zip(ls.labels, weights, strict=True)}
            best = max(probs, key=probs.get)
            label = (fixed[i].get(ls.task) if fixed and fixed[i] else None) or best
            results[i][ls.task] = TaskPrediction(label=label, probabilities=probs)
            chosen[i][ls.task] = label
    return results


def run_prompts(backend: Backend, prompts: Sequence[Prompt], mode: str = "generate", adapter: str | None = None,
                with_probabilities: bool = True) -> list[Prediction]:
    """Predictions for ready prompts, in input order."""
    if mode == "score":
        scored = score_labels(backend, prompts, adapter)
        return [Prediction(sample_id=p.sample_id, tasks=t) for p, t in zip(prompts, scored, strict=True)]
    if mode != "generate":
        raise ValueError(f"mode must be 'generate' or 'score', not {mode!r}")
    raws = backend.generate(prompts, adapter=adapter)
    predictions = [parse_answer(raw, p.label_sets, p.sample_id) for p, raw in zip(prompts, raws, strict=True)]
    if with_probabilities:
        ok = [i for i, pred in enumerate(predictions) if pred.ok]
        fixed = [{t: tp.label for t, tp in predictions[i].tasks.items()} for i in ok]
        scored = score_labels(backend, [prompts[i] for i in ok], adapter, fixed=fixed)
        for i, tasks in zip(ok, scored, strict=True):
            predictions[i].tasks = tasks
    return predictions


@dataclass
class Answered:
    """A sample's prompt (None when it could not get one) and its prediction."""

    prompt: Prompt | None
    prediction: Prediction


def answer(backend: Backend, samples: Sequence[Sample], setup: PromptSetup, adapter: str | None = None,
           with_probabilities: bool = True) -> list[Answered]:
    """The whole path for a batch of samples; one Answered per sample, in input order."""
    prepared = prepare(samples, setup)
    ready = [p for p in prepared if p.prompt is not None]
    answered = iter(run_prompts(backend, [p.prompt for p in ready], setup.mode, adapter, with_probabilities)
                    if ready else [])
    return [Answered(p.prompt, next(answered) if p.prompt is not None
                     else Prediction.failure(p.sample.id, p.error or "no prompt")) for p in prepared]


def predict(backend: Backend, samples: Sequence[Sample], setup: PromptSetup, adapter: str | None = None,
            with_probabilities: bool = True) -> list[Prediction]:
    """Predictions only (see `answer`)."""
    return [a.prediction for a in answer(backend, samples, setup, adapter, with_probabilities)]
