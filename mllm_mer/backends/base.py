"""The backend protocol: prompts in, raw text (or candidate log-probabilities) out.

Backends know nothing of labels or parsing; `mllm_mer.pipeline.answer` turns their output
into Predictions the same way for all of them. An adapter is chosen per call, by
the name it was registered under (as vLLM's LoRARequest does).
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, ClassVar, Protocol, runtime_checkable

from mllm_mer.core.types import Prompt, Reasoning, Thought
from mllm_mer.prompting.opening import Opening, answer_opening


def render(processor: Any, prompt: Prompt) -> str:
    """The prompt text through the model's own chat template, ending where the answer starts.

    `processor` is the model's processor or tokenizer (anything with the HF
    `apply_chat_template`); every backend and training render prompts through this one call. A prompt that
    reasons continues its assistant turn: the reasoning block's opening, then (once reasoned) the thought.
    """
    text = processor.apply_chat_template(prompt.messages, tokenize=False, add_generation_prompt=True)
    opened = prompt.reasoning is not None and text.endswith(prompt.reasoning.open)  # a thinking template's own
    return text + prompt.written(template_opened=opened)


def answer_start(processor: Any, prompt: Prompt) -> tuple[str, Opening | None]:
    """The text an answer is generated after: the rendered prompt and the answer's forced opening where it
    has one (`prompting.opening`: the backend then constrains with its grammar and puts the opening back
    before the generated text)."""
    opening = answer_opening(prompt)
    return render(processor, prompt) + (opening.text if opening else ""), opening


def thought_of(text: str, tokens: int, reasoning: Reasoning) -> Thought:
    """A reasoning block as generated: its text before the block's end (the end itself and anything after
    it dropped); cut when it never reached its end within the bound."""
    head, closed, _ = text.partition(reasoning.close)
    return Thought(text=head, tokens=tokens, cut=not closed and tokens >= reasoning.max_tokens)


@runtime_checkable
class RequestStream(Protocol):
    """Requests submitted one by one and collected as they finish (`Backend.stream`)."""

    room: bool  # another request may be submitted now
    pending: int  # submitted, not yet collected

    def submit(self, key: Any, prompt: Prompt, temperature: float = 0.0, seed: int | None = None) -> None:
        """Queue one answer under the prompt's schema (greedy, or sampled with its own seed)."""
        ...

    def submit_think(self, key: Any, prompt: Prompt, temperature: float = 0.0, seed: int | None = None) -> None:
        """Queue the prompt's reasoning block, as `Backend.think` writes it; collected as a `Thought`."""
        ...

    def collect(self) -> list[tuple[Any, str | Thought | list[float] | Exception]]:
        """At least one finished (key, answer text, a thought, a scoring's log-probabilities, or the error that
        request met); waits for one."""
        ...

    def submit_score(self, key: Any, prompt: Prompt, texts: Sequence[str]) -> None:
        """Only where the backend `can_stream_scores`: queue the scoring of the candidate answer texts."""
        ...


@runtime_checkable
class PeekingStream(RequestStream, Protocol):
    """A stream that shows answers while they are written (where the backend `can_peek`): set `watching`, and
    each answer submitted after that shows its text so far."""

    watching: bool

    def peek(self) -> list[tuple[Any, str]]:
        """(key, the answer's text so far) for each watched answer that wrote more since the last look."""
        ...

    def drop(self, key: Any) -> None:
        """Abort every request of `key`: nothing of it is collected."""
        ...


@runtime_checkable
class Backend(Protocol):
    """Required: `generate`, `score`, `think`, `chat`, `close`; a backend is a context manager that closes on exit.

    Optional abilities are declared, not guessed: `can_stream` says whether `stream` exists and
    `can_stream_scores` whether it also takes label scorings, `can_peek` whether it shows answers while they are
    written (a `PeekingStream`);
    `adapters`, `max_images`, `max_audios` and `tokenizer` are None/empty where a backend has none."""

    name: str
    can_stream: ClassVar[bool]  # True: `stream(adapter)` takes requests one by one (continuous submission)
    can_stream_scores: ClassVar[bool]  # True: its stream also takes label scorings (`submit_score`)
    can_peek: ClassVar[bool]  # True: its stream is a `PeekingStream` (answers' text so far, requests dropped)
    adapters: dict[str, Any]  # the adapters loaded, by name
    max_images: int | None  # images per prompt the backend takes (None: no limit known)
    max_audios: int | None  # waveforms per prompt (None: no limit known)
    tokenizer: Any  # the model's tokenizer, where the backend holds one (prompt budgets count with it)

    def generate(self, prompts: Sequence[Prompt], adapter: str | None = None, temperature: float = 0.0,
                 seeds: Sequence[int] | None = None) -> list[str]:
        """Answer text per prompt, constrained to each prompt's JSON schema, in input order (the answer's forced
        opening prefilled, not decoded: `answer_start`).

        Greedy by default; with a temperature each prompt is sampled, seeded by `seeds` (one per
        prompt) where the backend can seed per request, so repeated prompts give different draws."""
        ...

    def score(self, requests: Sequence[tuple[Prompt, Sequence[str]]],
              adapter: str | None = None) -> list[list[float]]:
        """Per prompt, the log-probability of each candidate continuation when decoding right
        after the prompt is constrained to its candidates (`mllm_mer.backends.label_scoring`)."""
        ...

    def think(self, prompts: Sequence[Prompt], adapter: str | None = None, temperature: float = 0.0,
              seeds: Sequence[int] | None = None) -> list[Thought]:
        """Each prompt's reasoning block (`prompt.reasoning`), generated after the prompt's lead with no grammar,
        until the block's end or its `max_tokens` (`thought_of`); greedy, or sampled as in `generate`."""
        ...

    def chat(self, prompt: Prompt, adapter: str | None = None, max_new_tokens: int = 256) -> Iterator[str]:
        """Free-text answer to a conversation (no schema), as a stream of the text so far."""
        ...

    def stream(self, adapter: str | None = None) -> AbstractContextManager[RequestStream]:
        """Only where `can_stream`: a block in which requests go out one by one (unfinished ones are
        dropped when it ends)."""
        ...

    def close(self) -> None:
        ...

    def __enter__(self) -> Backend:
        ...

    def __exit__(self, *exc: object) -> None:
        ...


class BackendBase:
    """What every backend shares: the defaults of the optional abilities, and closing as a context manager."""

    name: str = ""
    can_stream: ClassVar[bool] = False
    can_stream_scores: ClassVar[bool] = False
    can_peek: ClassVar[bool] = False
    adapters: dict[str, Any] = {}  # noqa: RUF012 (read-only default; a backend with adapters sets its own)
    max_images: int | None = None
    max_audios: int | None = None
    tokenizer: Any = None

    def stream(self, adapter: str | None = None) -> AbstractContextManager[RequestStream]:
        raise NotImplementedError(f"the {self.name} backend takes requests in batches only (can_stream is False)")

    def close(self) -> None:
        return None

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
