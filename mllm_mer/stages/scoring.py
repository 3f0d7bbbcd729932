"""The backend stages with error isolation: generate and parse, or score label probabilities.

A prompt the backend refuses (over its context length, a server's 4xx, a tokenizer that
chokes) fails alone: the batch is split until only the offending prompts fail. Lost
connections and timeouts are not input errors: the run stops and resumes later instead.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from mllm_mer.backends.base import Backend
from mllm_mer.core.parsing import parse_answer
from mllm_mer.core.types import Prediction, Prompt, TaskPrediction
from mllm_mer.prompting import answer_prefix
from mllm_mer.stages.prepare import Stage, quiet
from mllm_mer.stages.requests import Flow, Score

INPUT_ERRORS = (ValueError, RuntimeError, UnicodeError, OverflowError, IndexError)


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


def refused(prompt: Prompt, error: Exception, what: str = "this input") -> Prediction:
    return Prediction.failure(prompt.sample_id, f"the backend refused {what}: {error}", kind="backend")


def read_answer(prompt: Prompt, raw: str | Exception, max_new_tokens: int | None = None) -> Prediction:
    """The prediction a generated answer gives (a failure when the backend refused the prompt); the token
    limit, where known, is named when the answer was cut by it."""
    if isinstance(raw, Exception):
        return refused(prompt, raw)
    return parse_answer(raw, prompt.label_sets, prompt.sample_id, prompt.cue_modalities, max_new_tokens)


def answer_limit(backend: object) -> int | None:
    """The backend's answer token limit (--max-new-tokens), where it has one."""
    model = getattr(getattr(backend, "config", None), "model", None)
    return getattr(model, "max_new_tokens", None)


def _distribution(labels: Sequence[str], logps: Sequence[float]) -> dict[str, float]:
    # The log-probabilities already form a distribution; normalising again only absorbs rounding.
    top = max(logps)
    weights = [math.exp(v - top) for v in logps]
    total = sum(weights)
    return {label: w / total for label, w in zip(labels, weights, strict=True)}


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
        requests = [(prompts[i], task_candidates(prompts[i], k, chosen[i])) for i in owners]
        scored = call_isolating(lambda batch: backend.score(batch, adapter=adapter), requests)
        for i, logps in zip(owners, scored, strict=True):
            if isinstance(logps, Exception):
                results[i] = logps
                continue
            ls = prompts[i].label_sets[k]
            probs = _distribution(ls.labels, logps)
            label = (fixed[i].get(ls.task) if fixed and fixed[i] else None) or max(probs, key=probs.get)
            results[i][ls.task] = TaskPrediction(label=label, probabilities=probs)
            chosen[i][ls.task] = label
    return results


def task_candidates(prompt: Prompt, k: int, chosen: dict[str, str]) -> list[str]:
    """The answer texts whose probabilities score task `k`: each label in place, after the labels chosen
    for the tasks before it."""
    ls = prompt.label_sets[k]
    prefix = answer_prefix(chosen, ls.task)
    return [prompt.answer_lead + prefix + label + '"' for label in ls.labels]


def score_flow(prompt: Prompt, fixed: dict[str, str] | None = None) -> Flow:
    """`score_labels` for one prompt as a flow: one request per task, in answer order, each after the labels
    chosen before it (`fixed` ones, else the most probable); gives task -> TaskPrediction, or the error met."""
    tasks: dict[str, TaskPrediction] = {}
    chosen: dict[str, str] = {}
    for k, ls in enumerate(prompt.label_sets):
        logps = yield Score(prompt, task_candidates(prompt, k, chosen))
        if isinstance(logps, Exception):
            return logps
        probs = _distribution(ls.labels, logps)
        label = (fixed or {}).get(ls.task) or max(probs, key=probs.get)
        tasks[ls.task] = TaskPrediction(label=label, probabilities=probs)
        chosen[ls.task] = label
    return tasks


def probabilities_flow(prompt: Prompt, prediction: Prediction) -> Flow:
    """`add_probabilities` for one answered prediction, as a flow; gives the prediction (a failure when the
    backend refused to score it)."""
    if not prediction.ok:
        return prediction
    fixed = {t: tp.label for t, tp in prediction.tasks.items() if _kept(prediction, tp)}
    tasks = yield from score_flow(prompt, fixed)
    if isinstance(tasks, Exception):
        return refused(prompt, tasks)
    _take_scores(prediction, tasks)
    return prediction


def score_predictions(backend: Backend, prompts: Sequence[Prompt], adapter: str | None = None) -> list[Prediction]:
    """Score mode: label probabilities are the answer (no text is generated)."""
    scored = score_labels(backend, prompts, adapter)
    return [refused(p, t) if isinstance(t, Exception) else Prediction(sample_id=p.sample_id, tasks=t)
            for p, t in zip(prompts, scored, strict=True)]


def generate_predictions(backend: Backend, prompts: Sequence[Prompt], adapter: str | None = None,
                         temperature: float = 0.0, seeds: Sequence[int] | None = None) -> list[Prediction]:
    """Generate mode: constrained answers, parsed; greedy, or sampled at `temperature` with one seed per prompt."""
    seeded = list(zip(prompts, seeds if seeds is not None else [None] * len(prompts), strict=True))
    if seeds is None:
        raws = call_isolating(lambda batch: backend.generate([p for p, _ in batch], adapter=adapter), seeded)
    else:
        raws = call_isolating(lambda batch: backend.generate([p for p, _ in batch], adapter=adapter,
                                                             temperature=temperature, seeds=[s for _, s in batch]),
                              seeded)
    return [read_answer(p, raw, answer_limit(backend)) for (p, _), raw in zip(seeded, raws, strict=True)]


def run_prompts(backend: Backend, prompts: Sequence[Prompt], mode: str = "generate", adapter: str | None = None,
                with_probabilities: bool = True, on_stage: Stage = quiet) -> list[Prediction]:
    """Predictions for ready prompts, in input order; a prompt the backend refuses fails alone."""
    if mode == "score":
        on_stage(f"scoring labels of {len(prompts)}")
        return score_predictions(backend, prompts, adapter)
    if mode != "generate":
        raise ValueError(f"mode must be 'generate' or 'score', not {mode!r}")
    on_stage(f"generating {len(prompts)} answers")
    predictions = generate_predictions(backend, prompts, adapter)
    if with_probabilities:
        add_probabilities(backend, prompts, predictions, adapter, on_stage)
    return predictions


def add_probabilities(backend: Backend, prompts: Sequence[Prompt], predictions: list[Prediction],
                      adapter: str | None = None, on_stage: Stage = quiet) -> None:
    """Label probabilities for the answered predictions (in place; a prompt the backend refuses to score fails).

    A greedy answer's label becomes the most probable label of its scored distribution, so the
    two agree by construction: the grammar may let generation spell a label through tokens that
    scoring (each label's own tokens) never reads. A vote of sampled answers (self-consistency)
    keeps its label. Where the label written differs from the most probable, a note says both.
    """
    ok = [i for i, pred in enumerate(predictions) if pred.ok]
    if not ok:
        return
    # Later tasks are conditioned on the labels kept: a vote's labels, else the most probable ones.
    fixed = [{t: tp.label for t, tp in predictions[i].tasks.items() if _kept(predictions[i], tp)} for i in ok]
    on_stage(f"scoring labels of {len(ok)}")
    for i, tasks in zip(ok, score_labels(backend, [prompts[i] for i in ok], adapter, fixed=fixed), strict=True):
        if isinstance(tasks, Exception):
            predictions[i] = refused(prompts[i], tasks)
        else:
            _take_scores(predictions[i], tasks)


def _kept(prediction: Prediction, tp: TaskPrediction) -> str | None:
    """Why a written label is kept (a vote of sampled answers; a list answer's first label), or None: a greedy
    answer's single label gives way to the most probable one."""
    if "consistency" in prediction.extras:
        return "the vote of sampled answers (sampled, not the most probable)"
    return "the first label of the list answered" if tp.labels is not None else None


def _take_scores(prediction: Prediction, scored: dict[str, TaskPrediction]) -> None:
    written = {t: tp for t, tp in prediction.tasks.items()}
    for task, tp in scored.items():
        given = written.get(task)
        if given is None:
            continue
        kept = _kept(prediction, given)
        if kept:
            tp.label, tp.labels = given.label, given.labels
        if given.label != (top := most_probable(tp)):
            prediction.notes.append(disagreement_note(task, given.label, tp, kept))
            if "consistency" in prediction.extras:
                prediction.extras["consistency"].setdefault("most_probable", {})[task] = top
    prediction.tasks = scored


def most_probable(tp: TaskPrediction) -> str | None:
    return max(tp.probabilities, key=tp.probabilities.get) if tp.probabilities else None


def disagreement_note(task: str, written: str, tp: TaskPrediction, kept: str | None) -> str:
    """Why a label and the most probable label of its distribution differ (`kept`: why the written label
    stays), or why the label was changed to the most probable."""
    probs = tp.probabilities or {}
    top = most_probable(tp)
    odds = f"{top!r} {probs.get(top, 0.0):.3f} against {written!r} {probs.get(written, 0.0):.3f}"
    if not kept:
        return (f"{task}: the generated answer wrote {written!r}, but the scored distribution's most probable "
                f"label is {odds}; the label is {top!r} (any rationale was written for {written!r})")
    return f"{task}: the label {written!r} is {kept}; the most probable label is {odds}"
