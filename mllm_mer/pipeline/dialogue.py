"""Dialogues in lockstep: turn i of every dialogue in one backend call, each turn with the earlier turns
as context, labelled with the emotions predicted for them (or none, or gold: oracle information)."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from mllm_mer.conversation.context import CONTEXT_LABELS, DEFAULT_CONTEXT_WINDOW, context_for
from mllm_mer.core.types import Prediction, Sample
from mllm_mer.media.windows import shared_windows
from mllm_mer.pipeline.answer import Answered, answer_run
from mllm_mer.strategies import RunContext


def _turns_at(step: int, dialogues: Sequence[Sequence[Sample]], given: list[list[str | None]], window: int,
              done: dict[str, Prediction], results: list[list[Prediction | None]]) -> tuple[list[Sample], list[int]]:
    """The samples of turn `step` still to answer (with their context), and the dialogue each is from."""
    batch, owners = [], []
    for k, turns in enumerate(dialogues):
        if step >= len(turns):
            continue
        sample = replace(turns[step], context=context_for(turns, step, given[k], window))
        if sample.id in done:
            results[k][step] = done[sample.id]
        else:
            batch.append(sample)
            owners.append(k)
    return batch, owners


def classify_dialogues(backend, dialogues: Sequence[Sequence[Sample]], run: RunContext, context_labels: str,
                       window: int = DEFAULT_CONTEXT_WINDOW, task: str = "emotion",
                       done: dict[str, Prediction] | None = None,
                       on_turn: Callable[[list[Sample], list[Answered]], None] | None = None,
                       batch_size: int | None = None) -> list[list[Prediction]]:
    """Predictions for every turn, turn i of every dialogue in one backend call (in chunks of `batch_size`).

    `done` holds predictions already made (a resumed run): those turns are not asked again, and
    their labels still feed the context of later turns. `on_turn(samples, answered)` sees each
    chunk as it finishes (prediction and prompt), to write it down at once.
    """
    if context_labels not in CONTEXT_LABELS:
        raise ValueError(f"context labels must be one of {', '.join(CONTEXT_LABELS)}, not {context_labels!r}")
    done = dict(done or {})
    results: list[list[Prediction | None]] = [[None] * len(d) for d in dialogues]
    given: list[list[str | None]] = [[None] * len(d) for d in dialogues]
    setup = run.setup
    # The turns of a recording are windows of one file: one decoding pass serves them all.
    with shared_windows([s for d in dialogues for s in d if s.id not in done], setup.media, setup.modalities):
        for step in range(max((len(d) for d in dialogues), default=0)):
            batch, owners = _turns_at(step, dialogues, given, window, done, results)
            size = batch_size or max(1, len(batch))
            for start in range(0, len(batch), size):
                chunk = batch[start:start + size]
                answered = answer_run(backend, chunk, run)
                for k, a in zip(owners[start:start + size], answered, strict=True):
                    results[k][step] = a.prediction
                if on_turn:
                    on_turn(chunk, answered)
            for k, turns in enumerate(dialogues):
                if step < len(turns) and context_labels != "none":
                    given[k][step] = (results[k][step].label(task) if context_labels == "predicted"
                                      else turns[step].gold.get(task))
    return results  # type: ignore[return-value]
