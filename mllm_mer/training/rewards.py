"""Verifiable rewards for reinforcement fine-tuning (GRPO): small pure functions of one completion.

Each reward reads the completion text and what the prompt asked (`Asked`: label sets, the modalities it
showed, the gold labels) and returns a float. A recipe weighs them by name (`REWARDS`):

- `correct`: per task, 1 for the gold label, partial credit for a label the similarity calls near
  (same sector of an emotion wheel, or the same valence), 0 otherwise; the mean over tasks.
- `format`: 1 when the whole answer is the JSON object the schema asks for with every label in its set
  (nothing after it), else 0.
- `grounded`: 1 for a whole answer object whose rationale and cues name only modalities the prompt
  showed; 0 when they name another (a text-only sample whose rationale says "she frowns") or when the
  answer is broken (else breaking the answer would be the easy way to earn it).
- `length`: 0 up to `max_chars` of answer, then down to -1 at twice that (against padding).
- `reasoning_length`: the same over the reasoning block's text, from `max_reasoning_chars` (a block is also
  bounded in tokens by `max_reasoning_tokens`; this asks for less, graded).
- `reasoning_match`: how close the reasoning block is to the sample's reference reasoning (the recipe's
  `reasoning_col`), difflib's similarity ratio in [0, 1]: a dense signal where the label alone rewards a
  policy only when a whole chain comes out right. 0 without a reference or without a block.

A prompt that reasons first (`Asked.reasoning`) is answered by its reasoning block, the block's end, then the
answer: every reward reads the answer after the block, and `grounded` reads the reasoning too.
"""
from __future__ import annotations

import difflib
import json
from collections.abc import Callable
from dataclasses import dataclass, field

from mllm_mer.core.emotion_wheels import load_wheels
from mllm_mer.core.modality_words import modality_patterns
from mllm_mer.core.parsing import parse_answer
from mllm_mer.core.types import CUE_MODALITIES, LabelSet, Reasoning

# Valence of each Ekman sector (surprise has none: it can be either).
VALENCE = {"joy": "positive", "sadness": "negative", "anger": "negative", "disgust": "negative",
           "fear": "negative", "neutral": "neutral"}
SIMILARITIES = ("none", "wheel", "valence")


@dataclass(frozen=True)
class Asked:
    """What one prompt asked: its label sets, the cue modalities it showed, the gold answer."""

    label_sets: tuple[LabelSet, ...]
    gold: dict[str, str]
    shown: tuple[str, ...] = CUE_MODALITIES
    reasoning: Reasoning | None = None  # the block the answer follows (None: the answer alone)
    reference: str | None = None  # the sample's reference reasoning (`reasoning_col`), for `reasoning_match`


@dataclass(frozen=True)
class RewardOptions:
    similarity: str = "none"  # none | wheel | valence: what earns partial credit
    wheel: str = "plutchik"  # the wheel `similarity: wheel` reads
    partial_credit: float = 0.5
    max_chars: int = 400  # answer length before the length penalty starts
    max_reasoning_chars: int = 400  # reasoning length before the reasoning-length penalty starts
    weights: dict[str, float] = field(default_factory=lambda: {"correct": 1.0, "format": 0.5})

    def __post_init__(self) -> None:
        if self.similarity not in SIMILARITIES:
            raise ValueError(f"reward similarity {self.similarity!r}: one of {', '.join(SIMILARITIES)}")
        unknown = sorted(set(self.weights) - set(REWARDS))
        if unknown:
            raise ValueError(f"unknown rewards {unknown}: the rewards are {', '.join(REWARDS)}")
        if not 0 <= self.partial_credit <= 1 or min(self.max_chars, self.max_reasoning_chars) < 1:
            raise ValueError("partial_credit must be in [0, 1] and max_chars, max_reasoning_chars at least 1")


def _near(predicted: str, gold: str, options: RewardOptions) -> bool:
    if options.similarity == "none":
        return False
    wheels = load_wheels()
    if options.similarity == "wheel":
        return wheels.sector(options.wheel, predicted) == wheels.sector(options.wheel, gold)
    valence = VALENCE.get(wheels.sector("ekman", predicted))
    return valence is not None and valence == VALENCE.get(wheels.sector("ekman", gold))


def split_reasoning(text: str, asked: Asked) -> tuple[str | None, str]:
    """(reasoning, answer): the block's text before its end and the answer after it; (None, text) for a prompt
    that does not reason, and ("...", "") for a block that never ended (no answer follows it)."""
    if asked.reasoning is None:
        return None, text
    head, closed, answer = (text or "").partition(asked.reasoning.close)
    return head, answer if closed else ""


def correct(text: str, asked: Asked, options: RewardOptions) -> float:
    text = split_reasoning(text, asked)[1]
    if _whole_object(text) is None:  # an answer cut short earns nothing, though its labels can be read
        return 0.0
    prediction = parse_answer(text, asked.label_sets, "reward", asked.shown)
    scores = []
    for ls in asked.label_sets:
        task = prediction.tasks.get(ls.task)
        gold = asked.gold.get(ls.task)
        if task is None or gold is None:
            scores.append(0.0)
        elif task.label == gold:
            scores.append(1.0)
        else:
            scores.append(options.partial_credit if _near(task.label, gold, options) else 0.0)
    return sum(scores) / len(scores) if scores else 0.0


def _whole_object(text: str) -> dict | None:
    """The answer when the whole of it is one JSON object (as constrained decoding writes it), else None."""
    try:
        data = json.loads((text or "").strip())
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def well_formed(text: str, asked: Asked, options: RewardOptions) -> float:
    # A bare label parses, and so does an object followed by more text, but a policy rewarded for those
    # learns to pad after its answer.
    text = split_reasoning(text, asked)[1]
    if _whole_object(text) is None:
        return 0.0
    return 1.0 if parse_answer(text, asked.label_sets, "reward", asked.shown).ok else 0.0


def absent_claims(text: str, shown: tuple[str, ...]) -> list[str]:
    """The modalities not shown that the answer's rationale or cues still speak of."""
    # Only a whole answer that is one object is read by its fields; anything else is read whole (a broken
    # answer's first parseable object may be its inner cues, and its rationale would go unread).
    data = _whole_object(text)
    rationale = data.get("rationale") if data else text
    cues = data.get("cues") if data and isinstance(data.get("cues"), dict) else {}
    said = " ".join([rationale if isinstance(rationale, str) else "", *map(str, cues.values())])
    claimed = []
    for modality, pattern in modality_patterns().items():
        if modality not in shown and (cues.get(modality) or pattern.search(said)):
            claimed.append(modality)
    return claimed


def grounded(text: str, asked: Asked, options: RewardOptions) -> float:
    # A broken answer has no rationale to be grounded: rewarding it would teach a policy to break its
    # answers rather than to stop naming what it was not shown. The reasoning is read whole, as free text.
    reasoning, answer = split_reasoning(text, asked)
    if not _whole_object(answer):
        return 0.0
    return 0.0 if absent_claims(answer, asked.shown) or absent_claims(reasoning or "", asked.shown) else 1.0


def _over(chars: int, bound: int) -> float:
    return -min(1.0, (chars - bound) / bound) if chars > bound else 0.0


def length(text: str, asked: Asked, options: RewardOptions) -> float:
    return _over(len(split_reasoning(text, asked)[1] or ""), options.max_chars)


def reasoning_length(text: str, asked: Asked, options: RewardOptions) -> float:
    reasoning = split_reasoning(text, asked)[0]
    return 0.0 if reasoning is None else _over(len(reasoning), options.max_reasoning_chars)


def reasoning_match(text: str, asked: Asked, options: RewardOptions) -> float:
    reasoning = split_reasoning(text, asked)[0]
    if reasoning is None or not asked.reference:
        return 0.0
    return difflib.SequenceMatcher(None, reasoning.strip(), asked.reference.strip(), autojunk=False).ratio()


Reward = Callable[[str, Asked, RewardOptions], float]
REWARDS: dict[str, Reward] = {"correct": correct, "format": well_formed, "grounded": grounded, "length": length,
                               "reasoning_length": reasoning_length, "reasoning_match": reasoning_match}


def score(text: str, asked: Asked, options: RewardOptions) -> dict[str, float]:
    """Each weighted reward of one completion, and their weighted sum under `total`."""
    parts = {name: REWARDS[name](text, asked, options) for name in options.weights}
    parts["total"] = sum(options.weights[name] * value for name, value in parts.items())
    return parts
