"""Model text -> Prediction. Pure functions; never a silent guess.

Accepts the JSON answer the schema asks for (also inside a code fence or after
some preamble), normalises labels through the label set's synonyms, and marks
anything else ok=False with the reason and the raw text kept.
"""
from __future__ import annotations

import json
import re
from typing import Any

from mllm_mer.core.types import CUE_MODALITIES, LabelSet, Prediction, TaskPrediction

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def _first_json_object(text: str) -> dict[str, Any] | None:
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    decoder = json.JSONDecoder()  # strict: what a standard client's json.loads rejects is no answer
    for candidate in candidates:
        for start in (i for i, ch in enumerate(candidate) if ch == "{"):
            try:
                value, _ = decoder.raw_decode(candidate[start:])
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                return value
    return None


def _no_json_reason(text: str) -> str:
    lenient = json.JSONDecoder(strict=False)
    for start in (i for i, ch in enumerate(text) if ch == "{"):
        try:
            lenient.raw_decode(text[start:])
        except json.JSONDecodeError:
            continue
        return "invalid JSON: a raw control character inside a string"
    return "no JSON object in the answer"


def _cut_off(text: str) -> bool:
    """An answer object that opens and never closes: constrained decoding stops only there when the token
    limit ends it."""
    body = text.strip().removeprefix("```json").removeprefix("```").lstrip()
    return body.startswith("{") and not body.rstrip().rstrip("`").endswith("}")


def _limit(max_new_tokens: int | None) -> str:
    return f"--max-new-tokens {max_new_tokens}" if max_new_tokens else "--max-new-tokens"


def cut_message(max_new_tokens: int | None) -> str:
    return f"cut at {_limit(max_new_tokens)}; raise it"


def _complete_labels(text: str, ls: LabelSet) -> TaskPrediction | None:
    """The task's label(s) if the cut text holds them whole (a closed string; a list with its items closed)."""
    key = re.escape(json.dumps(ls.task))
    if not ls.list_answer:
        found = re.search(key + r'\s*:\s*"([^"\\]*)"', text)
        label = ls.normalise(found.group(1)) if found else None
        return TaskPrediction(label) if label else None
    found = re.search(key + r'\s*:\s*\[([^\]]*)\]', text)
    labels, outside = list_labels(ls, re.findall(r'"([^"\\]*)"', found.group(1))) if found else ([], [])
    return TaskPrediction(labels[0], labels=labels) if labels and not outside else None


def label_so_far(text: str, ls: LabelSet) -> str | None:
    """The task's label once an answer still being written under its schema has decided it: a closed string
    naming a label, or an open one that only one label of the set begins with (the schema's enum lets nothing
    else follow: `"d` can only become "disgust", `"s` is "sadness" or "surprise"); None until then, and for a
    list answer."""
    if ls.list_answer:
        return None
    if (found := _complete_labels(text, ls)) is not None:
        return found.label
    opened = re.search(re.escape(json.dumps(ls.task)) + r'\s*:\s*"([^"\\]*)$', text)
    could = [label for label in ls.labels if label.startswith(opened.group(1))] if opened else []
    return could[0] if len(could) == 1 else None


def _cut_answer(raw: str, text: str, label_sets: tuple[LabelSet, ...], sample_id: str,
                max_new_tokens: int | None) -> Prediction:
    """A cut answer: the labels it completed are taken, with a note; without every label it is a `cut` failure."""
    tasks = {ls.task: tp for ls in label_sets if (tp := _complete_labels(text, ls)) is not None}
    if len(tasks) < len(label_sets):
        missing = ", ".join(ls.task for ls in label_sets if ls.task not in tasks)
        prediction = Prediction.failure(sample_id, f"{cut_message(max_new_tokens)} (no complete {missing})",
                                        raw=raw, kind="cut")
        prediction.tasks = tasks
        return prediction
    return Prediction(sample_id=sample_id, tasks=tasks, raw=raw,
                      notes=[f"the answer was cut at {_limit(max_new_tokens)} (raise it for a whole answer): its "
                             "labels were complete and are taken; its rationale and cues are dropped"])


def list_labels(ls: LabelSet, value: Any) -> tuple[list[str], list[str]]:
    """(labels, words outside the set) of a list answer: a JSON list, or one comma-separated string;
    duplicates dropped, order kept."""
    items = value.split(",") if isinstance(value, str) else value if isinstance(value, list) else []
    labels, outside = [], []
    for item in items:
        if not str(item).strip():
            continue
        label = ls.normalise(str(item))
        if label is None:
            outside.append(str(item).strip())
        elif label not in labels:
            labels.append(label)
    return labels, outside


def _list_task(ls: LabelSet, value: Any, problems: list[str]) -> TaskPrediction | None:
    labels, outside = list_labels(ls, value)
    if not isinstance(value, (list, str)):
        problems.append(f"missing {ls.task!r} (a list)")
    elif outside:
        problems.append(f"{ls.task} {', '.join(map(repr, outside))} not in the label set")
    elif not labels:
        problems.append(f"{ls.task}: an empty list")
    else:
        return TaskPrediction(labels[0], labels=labels)
    return None


def parse_answer(raw: str, label_sets: tuple[LabelSet, ...], sample_id: str,
                 cue_modalities: tuple[str, ...] = CUE_MODALITIES, max_new_tokens: int | None = None) -> Prediction:
    """Parse one generated answer against the label sets it was asked for; a cue for a modality the
    prompt did not show (`cue_modalities` are those it did) is dropped, with a note. An answer cut by
    the token limit (`max_new_tokens`, named in the message) keeps the labels it completed."""
    text = (raw or "").strip()
    if not text:
        return Prediction.failure(sample_id, "empty answer", raw=raw)
    data = _first_json_object(text)
    if data is None:
        # A bare label ("Joy.") is an unambiguous answer for a single-task question.
        if len(label_sets) == 1 and (label := label_sets[0].normalise(text)) is not None:
            return Prediction(sample_id=sample_id, tasks={label_sets[0].task: TaskPrediction(label)}, raw=raw)
        if _cut_off(text):
            return _cut_answer(raw, text, label_sets, sample_id, max_new_tokens)
        return Prediction.failure(sample_id, _no_json_reason(text), raw=raw)

    tasks: dict[str, TaskPrediction] = {}
    problems: list[str] = []
    for ls in label_sets:
        value = data.get(ls.task)
        if ls.list_answer:
            if (found := _list_task(ls, value, problems)) is not None:
                tasks[ls.task] = found
            continue
        if not isinstance(value, str):
            problems.append(f"missing {ls.task!r}")
            continue
        label = ls.normalise(value)
        if label is None:
            problems.append(f"{ls.task} {value!r} is not one of {', '.join(ls.labels)}")
            continue
        tasks[ls.task] = TaskPrediction(label)
    rationale = data.get("rationale")
    cues = data.get("cues") if isinstance(data.get("cues"), dict) else {}
    unseen = [m for m in CUE_MODALITIES if cues.get(m) and m not in cue_modalities]
    prediction = Prediction(
        sample_id=sample_id, tasks=tasks, raw=raw,
        rationale=rationale if isinstance(rationale, str) else None,
        cues={m: str(cues[m]) for m in cue_modalities if cues.get(m)},
        notes=[f"dropped the answer's {', '.join(unseen)} cue: the prompt did not show that modality"]
        if unseen else [],
    )
    if problems:
        prediction.ok = False
        prediction.error = "; ".join(problems)
        prediction.error_kind = "parse"
    return prediction
