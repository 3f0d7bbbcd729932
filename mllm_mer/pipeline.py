"""Composes the stages: sample -> media -> prompt -> backend -> parse (-> label probabilities).

Every entry point (CLI, app, evaluate, training, benchmarks) calls these functions;
none re-implements a stage. A sample whose media fails becomes a failed Prediction with
the reason, and the rest of the batch goes on.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace

from mllm_mer.agent.tools import Toolbox
from mllm_mer.backends.base import Backend
from mllm_mer.media import MediaError, load_media
from mllm_mer.parsing import parse_answer
from mllm_mer.prompting import answer_prefix, build_prompt, needs_demonstrations
from mllm_mer.types import MediaInputs, Prediction, Prompt, PromptSetup, Sample, TaskPrediction, Turn

# Errors a backend raises for one bad input (vLLM's validation of an over-long prompt, a server's
# 4xx, a tokenizer that chokes): the batch is split until only the offending samples fail. Lost
# connections and timeouts are not among them: the run stops and resumes later instead.
INPUT_ERRORS = (ValueError, RuntimeError, UnicodeError, OverflowError, IndexError)


@dataclass
class Prepared:
    """A sample made ready for a backend: its prompt, or why it could not get one."""

    sample: Sample
    prompt: Prompt | None = None
    error: str | None = None
    error_kind: str = "media"
    notes: list[str] = field(default_factory=list)
    media: MediaInputs | None = None  # what the media stage produced (the agent's tools start from it)


def fit_text_budget(sample: Sample, max_chars: int) -> tuple[Sample, list[str]]:
    """The sample with transcript and context cut to `max_chars` in all (the latest turns kept)."""
    notes = []
    transcript = sample.transcript or ""
    if len(transcript) > max_chars:
        notes.append(f"transcript cut from {len(transcript)} to {max_chars} characters (text budget)")
        transcript = transcript[:max_chars]
    room = max_chars - len(transcript)
    kept: list[Turn] = []
    for turn in reversed(sample.context):
        cost = len(turn.text) + len(turn.speaker)
        if cost > room:
            break
        kept.insert(0, turn)
        room -= cost
    if len(kept) < len(sample.context):
        notes.append(f"context cut to its last {len(kept)} of {len(sample.context)} turns (text budget)")
    if not notes:
        return sample, notes
    return replace(sample, transcript=transcript or sample.transcript, context=tuple(kept)), notes


def call_isolating(call: Callable[[list], list], items: Sequence) -> list:
    """`call(items)`, one result per item; when the batch raises an input error, it is split in
    halves until each failing item stands alone, and that item's result is the exception."""
    try:
        results = list(call(list(items)))
    except INPUT_ERRORS as error:
        if len(items) == 1:
            return [error]
        half = len(items) // 2
        return call_isolating(call, items[:half]) + call_isolating(call, items[half:])
    if len(results) != len(items):
        raise RuntimeError(f"the backend returned {len(results)} answers for {len(items)} prompts")
    return results


def present_modalities(sample: Sample, media: MediaInputs, modalities: Sequence[str]) -> list[str]:
    """The modalities a sample actually brings, once absent and ablated ones are gone."""
    present = []
    if "text" in modalities and (sample.transcript or media.transcript or "").strip():
        present.append("text")
    if "video" in modalities and (media.frames or media.image is not None):
        present.append("video")
    if "audio" in modalities and (media.vocal_cues or sample.vocal_cues):
        present.append("audio")
    return present


def has_evidence(sample: Sample, media: MediaInputs, modalities: Sequence[str]) -> bool:
    """Whether anything is left to classify."""
    return bool(present_modalities(sample, media, modalities))


Stage = Callable[[str], None]  # told what the pipeline is doing now, for progress displays


def _quiet(stage: str) -> None:
    pass


def prepare(samples: Sequence[Sample], setup: PromptSetup, on_stage: Stage = _quiet,
            toolbox: Toolbox | None = None) -> list[Prepared]:
    """Media and prompt for each sample; a sample that cannot get one keeps the reason.

    A template that shows retrieved demonstrations gets them from `toolbox.index`."""
    demonstrations: list[list] = [[] for _ in samples]
    if needs_demonstrations(setup.template):
        if toolbox is None or toolbox.index is None:
            raise ValueError(f"template {setup.template!r} shows retrieved demonstrations: give a labelled split "
                             "to retrieve from (--retrieve-split, --retrieve-dataset, --retrieve-data-dir)")
        on_stage(f"retrieving demonstrations for {len(samples)}")
        demonstrations = toolbox.index.nearest(list(samples), setup.retrieve_k, toolbox.source)
    prepared = []
    for number, (sample, demos) in enumerate(zip(samples, demonstrations, strict=True), 1):
        on_stage(f"decoding media {number}/{len(samples)}")
        sample, notes = fit_text_budget(sample, setup.max_text_chars)
        try:
            inputs = load_media(sample, setup.media, modalities=setup.modalities)
        except MediaError as error:
            prepared.append(Prepared(sample, error=str(error), error_kind="media", notes=notes))
            continue
        if not has_evidence(sample, inputs, setup.modalities):
            prepared.append(Prepared(sample, error="no usable input: empty transcript and no media "
                                                   f"(modalities {', '.join(setup.modalities)})",
                                     error_kind="no_evidence", notes=notes))
            continue
        prompt = build_prompt(sample, setup.scheme, setup.template, inputs, setup.modalities, demonstrations=demos)
        prepared.append(Prepared(sample, prompt, notes=notes + list(inputs.notes), media=inputs))
    return prepared


def score_labels(backend: Backend, prompts: Sequence[Prompt], adapter: str | None = None,
                 fixed: Sequence[dict[str, str]] | None = None) -> list[dict[str, TaskPrediction] | Exception]:
    """Label probabilities per task, as a decoder constrained to the label set would choose the answer's value.

    Tasks are scored in answer order; each later task is conditioned on the labels
    already in the answer (`fixed`, e.g. generated ones) or else on the most probable
    label of the earlier tasks. One batched backend call per task. A prompt the backend
    refuses gets the error instead of its scores.
    """
    results: list[dict[str, TaskPrediction] | Exception] = [{} for _ in prompts]
    chosen: list[dict[str, str]] = [{} for _ in prompts]
    for k in range(max((len(p.label_sets) for p in prompts), default=0)):
        owners = [i for i, p in enumerate(prompts) if k < len(p.label_sets) and isinstance(results[i], dict)]
        requests = []
        for i in owners:
            ls = prompts[i].label_sets[k]
            prefix = answer_prefix(chosen[i], ls.task)
            requests.append((prompts[i], [prompts[i].answer_lead + prefix + label + '"' for label in ls.labels]))
        scored = call_isolating(lambda batch: backend.score(batch, adapter=adapter), requests)
        for i, logps in zip(owners, scored, strict=True):
            if isinstance(logps, Exception):
                results[i] = logps
                continue
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


def _refused(prompt: Prompt, error: Exception) -> Prediction:
    return Prediction.failure(prompt.sample_id, f"the backend refused this input: {error}", kind="backend")


def run_prompts(backend: Backend, prompts: Sequence[Prompt], mode: str = "generate", adapter: str | None = None,
                with_probabilities: bool = True, on_stage: Stage = _quiet) -> list[Prediction]:
    """Predictions for ready prompts, in input order; a prompt the backend refuses fails alone."""
    if mode == "score":
        on_stage(f"scoring labels of {len(prompts)}")
        scored = score_labels(backend, prompts, adapter)
        return [_refused(p, t) if isinstance(t, Exception) else Prediction(sample_id=p.sample_id, tasks=t)
                for p, t in zip(prompts, scored, strict=True)]
    if mode != "generate":
        raise ValueError(f"mode must be 'generate' or 'score', not {mode!r}")
    on_stage(f"generating {len(prompts)} answers")
    raws = call_isolating(lambda batch: backend.generate(batch, adapter=adapter), prompts)
    predictions = [_refused(p, raw) if isinstance(raw, Exception) else parse_answer(raw, p.label_sets, p.sample_id)
                   for p, raw in zip(prompts, raws, strict=True)]
    if with_probabilities:
        add_probabilities(backend, prompts, predictions, adapter, on_stage)
    return predictions


def add_probabilities(backend: Backend, prompts: Sequence[Prompt], predictions: list[Prediction],
                      adapter: str | None = None, on_stage: Stage = _quiet) -> None:
    """Label probabilities for the answered predictions, their labels kept (in place; a prompt the
    backend refuses to score fails)."""
    ok = [i for i, pred in enumerate(predictions) if pred.ok]
    if not ok:
        return
    fixed = [{t: tp.label for t, tp in predictions[i].tasks.items()} for i in ok]
    on_stage(f"scoring labels of {len(ok)}")
    for i, tasks in zip(ok, score_labels(backend, [prompts[i] for i in ok], adapter, fixed=fixed), strict=True):
        if isinstance(tasks, Exception):
            predictions[i] = _refused(prompts[i], tasks)
        else:
            predictions[i].tasks = tasks


def calibrate(prediction: Prediction, temperatures: dict[str, float]) -> None:
    """Temperature-scale each task's probabilities (fitted by `mllm-mer calibrate`); labels stay."""
    from mllm_mer.calibration import rescale

    for task, tp in prediction.tasks.items():
        if tp.probabilities and temperatures.get(task, 1.0) != 1.0:
            tp.probabilities = rescale(tp.probabilities, temperatures[task])


@dataclass
class Answered:
    """A sample's prompt (None when it could not get one) and its prediction."""

    prompt: Prompt | None
    prediction: Prediction


def sample_answers(backend: Backend, prompts: Sequence[Prompt], setup: PromptSetup, adapter: str | None = None,
                   with_probabilities: bool = True, on_stage: Stage = _quiet) -> list[Prediction]:
    """Self-consistency in one pass: `setup.draws` sampled answers per prompt in one backend call,
    voted per task; probabilities are then scored once, for the voted labels."""
    from mllm_mer.consistency import vote

    n = setup.draws
    requests = [(p, draw) for p in prompts for draw in range(n)]
    on_stage(f"drawing {len(requests)} answers")
    raws = call_isolating(lambda batch: backend.generate([p for p, _ in batch], adapter=adapter,
                                                         temperature=setup.sampling_temperature,
                                                         seeds=[draw for _, draw in batch]), requests)
    draws = [_refused(p, raw) if isinstance(raw, Exception) else parse_answer(raw, p.label_sets, p.sample_id)
             for (p, _), raw in zip(requests, raws, strict=True)]
    predictions = [vote(draws[i * n:(i + 1) * n], p.label_sets, setup.sampling_temperature)
                   for i, p in enumerate(prompts)]
    if with_probabilities:
        add_probabilities(backend, prompts, predictions, adapter, on_stage)
    return predictions


def run_agent(backend: Backend, ready: Sequence[Prepared], setup: PromptSetup, toolbox: Toolbox,
              adapter: str | None = None, with_probabilities: bool = True, on_stage: Stage = _quiet
              ) -> list[Prediction]:
    """The agent over ready samples (`setup.draws` episodes each, voted when more than one)."""
    from mllm_mer.agent import run_episodes, start
    from mllm_mer.consistency import vote

    n = setup.draws
    episodes = [start(p.prompt, p.sample, p.media, toolbox, draw) for p in ready for draw in range(n)]
    run_episodes(backend, episodes, toolbox, adapter, with_probabilities,
                 temperature=setup.sampling_temperature if n > 1 else 0.0, on_stage=on_stage)
    if n == 1:
        return [ep.prediction for ep in episodes]
    return [vote([ep.prediction for ep in episodes[i * n:(i + 1) * n]], p.prompt.label_sets,
                 setup.sampling_temperature) for i, p in enumerate(ready)]


def answer(backend: Backend, samples: Sequence[Sample], setup: PromptSetup, adapter: str | None = None,
           with_probabilities: bool = True, on_stage: Stage = _quiet, toolbox: Toolbox | None = None
           ) -> list[Answered]:
    """The whole path for a batch of samples, by the setup's strategy; one Answered per sample, in input order."""
    return answer_prepared(backend, prepare(samples, setup, on_stage, toolbox), setup, adapter, with_probabilities,
                           on_stage, toolbox)


def answer_prepared(backend: Backend, prepared: Sequence[Prepared], setup: PromptSetup, adapter: str | None = None,
                    with_probabilities: bool = True, on_stage: Stage = _quiet, toolbox: Toolbox | None = None
                    ) -> list[Answered]:
    """`answer` from the media stage on: the backend stages by the setup's strategy, in input order."""
    ready = [p for p in prepared if p.prompt is not None]
    prompts = [p.prompt for p in ready]
    if not ready:
        results_of_ready: list[Prediction] = []
    elif setup.strategy == "fusion":
        from mllm_mer.fusion import run_fusion

        results_of_ready = run_fusion(backend, ready, setup, adapter, on_stage)
    elif setup.strategy == "agent":
        results_of_ready = run_agent(backend, ready, setup, toolbox or Toolbox(setup), adapter,
                                     with_probabilities or setup.mode == "score", on_stage)
    elif setup.draws > 1:
        results_of_ready = sample_answers(backend, prompts, setup, adapter, with_probabilities, on_stage)
    else:
        results_of_ready = run_prompts(backend, prompts, setup.mode, adapter, with_probabilities, on_stage)
    answered = iter(results_of_ready)
    return [_finish(p, next(answered) if p.prompt is not None else None, setup) for p in prepared]


def _finish(prepared: Prepared, prediction: Prediction | None, setup: PromptSetup) -> Answered:
    """The sample's notes on its prediction (a failure when it got no prompt), calibrated if asked."""
    if prediction is None:
        prediction = Prediction.failure(prepared.sample.id, prepared.error or "no prompt", kind=prepared.error_kind)
    prediction.notes = prepared.notes + prediction.notes
    if setup.temperatures:
        calibrate(prediction, setup.temperatures)
    return Answered(prepared.prompt, prediction)


def streams_answers(backend: Backend, setup: PromptSetup) -> bool:
    """Whether `answer_stream` can submit continuously: one greedy generated answer per sample on a
    backend that takes requests one by one (vLLM engine, OpenAI server)."""
    return (hasattr(backend, "stream") and setup.strategy == "single" and setup.draws == 1
            and setup.mode == "generate")


def answer_stream(backend: Backend, samples: Sequence[Sample], setup: PromptSetup, adapter: str | None = None,
                  with_probabilities: bool = True, toolbox: Toolbox | None = None, batch_size: int = 16,
                  continuous: bool = True, prefetch: int = 32, media_workers: int | None = None,
                  on_stage: Stage = _quiet) -> Iterator[list[tuple[Sample, Answered]]]:
    """Answers for many samples, in groups as they finish (not in input order).

    Media and prompts are prepared ahead by a bounded pool (`PreparedFeed`) while the backend
    works. Where the backend allows it (`streams_answers`) and `continuous` is on, each prompt
    is submitted as soon as it is ready and each answer comes back as it finishes (with its
    label probabilities, if asked, scored right then while the other requests keep running);
    otherwise `batch_size` samples at a time go through `answer_prepared`.
    """
    from mllm_mer.feed import PreparedFeed

    with PreparedFeed(samples, setup, toolbox, media_workers, max(prefetch, 1)) as feed:
        if continuous and streams_answers(backend, setup):
            yield from _answer_continuously(backend, feed, setup, adapter, with_probabilities, on_stage)
            return
        while chunk := feed.take(batch_size):
            answered = answer_prepared(backend, chunk, setup, adapter, with_probabilities, on_stage, toolbox)
            yield [(p.sample, a) for p, a in zip(chunk, answered, strict=True)]


def _answer_continuously(backend: Backend, feed, setup: PromptSetup, adapter: str | None,
                         with_probabilities: bool, on_stage: Stage) -> Iterator[list[tuple[Sample, Answered]]]:
    held: dict[int, Prepared] = {}
    keys = itertools.count()
    with backend.stream(adapter) as stream:
        while not (feed.exhausted and stream.pending == 0):
            finished: list[tuple[Prepared, Prediction | None]] = []
            while stream.room and not feed.exhausted:
                # Wait for the feed only when the backend has nothing to work on.
                prepared = feed.next(block=stream.pending == 0 and not finished)
                if prepared is None:
                    break
                if prepared.prompt is None:
                    finished.append((prepared, None))
                    continue
                key = next(keys)
                try:
                    stream.submit(key, prepared.prompt)
                except INPUT_ERRORS as error:
                    finished.append((prepared, _refused(prepared.prompt, error)))
                    continue
                held[key] = prepared
            if stream.pending:
                on_stage(f"generating ({stream.pending} in flight)")
                for key, raw in stream.collect():
                    prepared = held.pop(key)
                    if isinstance(raw, Exception) and not isinstance(raw, INPUT_ERRORS):
                        raise raw
                    finished.append((prepared, _refused(prepared.prompt, raw) if isinstance(raw, Exception)
                                     else parse_answer(raw, prepared.prompt.label_sets, prepared.sample.id)))
            if with_probabilities:
                scored = [i for i, (_, pred) in enumerate(finished) if pred is not None]
                predictions = [finished[i][1] for i in scored]
                add_probabilities(backend, [finished[i][0].prompt for i in scored], predictions, adapter)
                for i, prediction in zip(scored, predictions, strict=True):
                    finished[i] = (finished[i][0], prediction)
            if finished:
                yield [(p.sample, _finish(p, pred, setup)) for p, pred in finished]


def predict(backend: Backend, samples: Sequence[Sample], setup: PromptSetup, adapter: str | None = None,
            with_probabilities: bool = True, toolbox: Toolbox | None = None) -> list[Prediction]:
    """Predictions only (see `answer`)."""
    return [a.prediction for a in answer(backend, samples, setup, adapter, with_probabilities, toolbox=toolbox)]
