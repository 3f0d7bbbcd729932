"""The reasoning stage (`--reasoning before|native`): each prompt writes its reasoning block first, then
answers after it.

The block is generated on its own, unconstrained and bounded by `--max-reasoning-tokens`, on every
backend alike (`Backend.think`); the answer is then generated (or its labels scored) as a continuation
of the assistant turn that holds the block, so the grammar never reaches inside the reasoning, a cut
block still gets a schema-valid answer, and label probabilities are read after the model's own
reasoning (its prompt comes from the prefix cache on vLLM).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from mllm_mer.backends.base import Backend
from mllm_mer.core.types import Prediction, Prompt
from mllm_mer.stages.prepare import Stage, quiet
from mllm_mer.stages.requests import Flow, Think
from mllm_mer.stages.scoring import call_isolating, refused


def reason(backend: Backend, prompts: Sequence[Prompt], adapter: str | None = None, temperature: float = 0.0,
           seeds: Sequence[int] | None = None) -> list[Prompt | Exception]:
    """Each prompt with its thought (a prompt that does not reason, or already did, as it is); a prompt the
    backend refuses gets the error instead."""
    todo = [i for i, p in enumerate(prompts) if p.reasoning is not None and p.thought is None]
    out: list[Prompt | Exception] = list(prompts)
    if not todo:
        return out
    seeded = [(prompts[i], seeds[i] if seeds is not None else None) for i in todo]

    def think(batch: list) -> list:
        chosen = [s for _, s in batch] if seeds is not None else None
        return backend.think([p for p, _ in batch], adapter=adapter, temperature=temperature, seeds=chosen)

    for i, thought in zip(todo, call_isolating(think, seeded), strict=True):
        out[i] = thought if isinstance(thought, Exception) else replace(prompts[i], thought=thought)
    return out


def thought_flow(prompt: Prompt, temperature: float = 0.0, seed: int | None = None) -> Flow:
    """`reason` for one prompt, as a flow: the prompt with its thought (as it is when it does not reason, or
    already did), or the error the backend met."""
    if prompt.reasoning is None or prompt.thought is not None:
        return prompt
    thought = yield Think(prompt, temperature, seed)
    return thought if isinstance(thought, Exception) else replace(prompt, thought=thought)


def keep_thought(prediction: Prediction, prompt: Prompt) -> Prediction:
    """The prediction with the reasoning it followed (its record; a note when the block was cut at its bound)."""
    if prompt.thought is None or prompt.reasoning is None:
        return prediction
    prediction.reasoning = prompt.thought.record(prompt.reasoning.order)
    if prompt.thought.cut:
        prediction.notes.append(f"the reasoning was cut at its bound of {prompt.reasoning.max_tokens} tokens "
                                "(--max-reasoning-tokens); the answer follows the reasoning as far as it went")
    return prediction


def answer_reasoned(backend: Backend, prompts: Sequence[Prompt], answer: Callable[[list[Prompt]], list[Prediction]],
                    adapter: str | None = None, temperature: float = 0.0, seeds: Sequence[int] | None = None,
                    on_stage: Stage = quiet) -> list[Prediction]:
    """`answer` over the prompts once they reasoned, in input order; a prompt whose reasoning the backend
    refuses fails alone. Prompts that do not reason (or reasoned already) go straight to `answer`."""
    if not any(p.reasoning is not None and p.thought is None for p in prompts):
        return [keep_thought(a, p) for a, p in zip(answer(list(prompts)), prompts, strict=True)]
    on_stage(f"reasoning for {len(prompts)}")
    reasoned = reason(backend, prompts, adapter, temperature, seeds)
    ready = [p for p in reasoned if isinstance(p, Prompt)]
    answered = iter(answer(ready) if ready else [])
    return [refused(p, r, "its reasoning") if isinstance(r, Exception) else keep_thought(next(answered), r)
            for p, r in zip(prompts, reasoned, strict=True)]
