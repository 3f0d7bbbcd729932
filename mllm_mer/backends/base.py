"""The backend protocol: prompts in, raw text (or candidate log-probabilities) out.

Backends know nothing of labels or parsing; `mllm_mer.pipeline.answer` turns their output
into Predictions the same way for all of them. An adapter is chosen per call, by
the name it was registered under (as vLLM's LoRARequest does).
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

from mllm_mer.core.types import Prompt


def render(processor: Any, prompt: Prompt) -> str:
    """The prompt text through the model's own chat template, ending where the answer starts.

    `processor` is the model's processor or tokenizer (anything with the HF
    `apply_chat_template`); every backend and training render prompts through this one call.
    """
    return processor.apply_chat_template(prompt.messages, tokenize=False, add_generation_prompt=True)


@runtime_checkable
class Backend(Protocol):
    name: str

    def generate(self, prompts: Sequence[Prompt], adapter: str | None = None, temperature: float = 0.0,
                 seeds: Sequence[int] | None = None) -> list[str]:
        """Answer text per prompt, constrained to each prompt's JSON schema, in input order.

        Greedy by default; with a temperature each prompt is sampled, seeded by `seeds` (one per
        prompt) where the backend can seed per request, so repeated prompts give different draws."""
        ...

    def score(self, requests: Sequence[tuple[Prompt, Sequence[str]]],
              adapter: str | None = None) -> list[list[float]]:
        """Per prompt, the log-probability of each candidate continuation when decoding right
        after the prompt is constrained to its candidates (`mllm_mer.backends.label_scoring`)."""
        ...

    def chat(self, prompt: Prompt, adapter: str | None = None, max_new_tokens: int = 256) -> Iterator[str]:
        """Free-text answer to a conversation (no schema), as a stream of the text so far."""
        ...

    def close(self) -> None:
        ...
