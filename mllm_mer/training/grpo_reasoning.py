"""Think-then-answer rollouts for GRPO: the reasoning block a rollout sampled, made into the tokens its answer
follows: the thought's own sampled tokens, then what inference writes after a thought (`Prompt.written`: the
block's end, then `after`), whether the block ended by itself or at its bound."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mllm_mer.backends.base import thought_of
from mllm_mer.core.types import Reasoning


def block_ids(tokenizer: Any, ids: list[int], reasoning: Reasoning, eos: Iterable[int]) -> list[int]:
    """A sampled block up to the token that ends it (its close string, an end of sequence) or its bound."""
    ends, kept = set(eos), []
    for token in ids[:reasoning.max_tokens]:
        kept.append(token)
        if token in ends or reasoning.close in tokenizer.decode(kept[-64:], skip_special_tokens=True):
            break
    return kept


def reasoned_lead(tokenizer: Any, ids: list[int], reasoning: Reasoning, eos: Iterable[int]) -> list[int]:
    """The token ids between the prompt and the answer: the thought as sampled (cut at its end or bound), then
    the block's end and `after`, as inference writes them after a thought (`Prompt.written`)."""
    kept = block_ids(tokenizer, ids, reasoning, eos)
    thought = thought_of(tokenizer.decode(kept, skip_special_tokens=True), len(kept), reasoning)
    end = tokenizer(reasoning.close + reasoning.after, add_special_tokens=False)["input_ids"]
    for size in range(len(kept), -1, -1):  # the sampled tokens that are the thought, where a token boundary ends it
        text = tokenizer.decode(kept[:size], skip_special_tokens=True)
        if text == thought.text:
            return kept[:size] + end
        if len(text) < len(thought.text):
            break
    # The block's end began inside a sampled token: the thought re-read as text.
    return tokenizer(thought.text + reasoning.close + reasoning.after, add_special_tokens=False)["input_ids"]


def extended_fields(fields: dict[str, Any], leads: list[list[int]]) -> dict[str, Any]:
    """The prompts' media fields for prompts that grew by `leads`: per-token fields (lists of lists, as
    `merged_media` gives them) get zeros for the text tokens added; tensors stay as they are."""
    out: dict[str, Any] = {}
    for key, value in fields.items():
        per_token = isinstance(value, list) and value and isinstance(value[0], list)
        out[key] = [row + [0] * len(lead) for row, lead in zip(value, leads, strict=True)] if per_token else value
    return out
