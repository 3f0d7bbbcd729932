"""Dialogues and their context: which samples form a conversation, and the earlier turns each one sees."""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mllm_mer.core.nesting import check_depth
from mllm_mer.core.types import Sample, Turn

# Emotions shown with earlier turns: none, the ones predicted for them (turns classified in
# order), or gold (oracle information, flagged in reports). One default for every verb.
CONTEXT_LABELS = ("none", "predicted", "gold")
DEFAULT_CONTEXT_LABELS = "none"
DEFAULT_CONTEXT_WINDOW = 5  # earlier turns given as context (-1: all)


def context_settings(data) -> tuple[str, int]:
    """(context labels, context window) a verb's DataConfig asks for, defaults filled in."""
    labels = data.context_labels or DEFAULT_CONTEXT_LABELS
    return labels, DEFAULT_CONTEXT_WINDOW if data.context_window is None else data.context_window


def dialogues_of(samples: Sequence[Sample]) -> list[list[Sample]]:
    """A split's samples as dialogues (by their `dialogue` metadata), in split order; a sample with no
    dialogue is a dialogue of one."""
    groups: dict[Any, list[Sample]] = {}
    for sample in samples:
        key = sample.metadata.get("dialogue")
        groups.setdefault(("dialogue", key) if key is not None else ("alone", sample.id), []).append(sample)
    return list(groups.values())


def context_for(turns: Sequence[Sample], index: int, labels: Sequence[str | None], window: int) -> tuple[Turn, ...]:
    """The earlier turns of a dialogue as context, each with the emotion given for it (or none).

    The one context-building function: dialogue analysis and the agent's `context` tool use it.
    """
    start = 0 if window < 0 else max(0, index - window)
    return tuple(Turn(speaker=turns[j].speaker or "", text=turns[j].transcript or "", emotion=labels[j])
                 for j in range(start, index))


def dialogue_history(samples: list[Sample]) -> dict[str, tuple[Turn, ...]]:
    """Per sample, every earlier turn of its dialogue (speaker and words, never labels), in split order."""
    history = {}
    for turns in dialogues_of(samples):
        if turns[0].metadata.get("dialogue") is None:
            continue
        for i, sample in enumerate(turns):
            history[sample.id] = context_for(turns, i, [None] * len(turns), -1)
    return history


def read_context(path: str | None) -> tuple[Turn, ...]:
    """Earlier turns from a JSONL file: {speaker, text, emotion?} per line."""
    if not path:
        return ()
    turns = []
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{path}: no such context file")
    check_depth(file)  # the stdlib parser would stop at the recursion limit without naming the file
    for number, line in enumerate(file.read_bytes().splitlines(), 1):
        if not line.strip():
            continue
        try:
            data: Any = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError:
            raise ValueError(f"{path}:{number}: not UTF-8 text (save the file as UTF-8)") from None
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{number}: not a JSON line ({error})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}:{number}: expected an object with speaker and text")
        turns.append(Turn(speaker=str(data.get("speaker", "")), text=str(data.get("text", "")),
                          emotion=data.get("emotion")))
    return tuple(turns)
