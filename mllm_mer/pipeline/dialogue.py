"""Dialogues, each turn with the earlier turns as context, labelled with the emotions predicted for them (or
none, or gold: oracle information).

On a backend that takes requests one by one (the vLLM engine, an OpenAI server) every dialogue runs on its
own: a turn goes out the moment its context is known (under predicted labels, the moment the dialogue's
previous turn is answered; on the vLLM engine, the moment that answer has written its label), so a long
dialogue never holds a short one back. Elsewhere (transformers,
`--submission batched`) they run in lockstep: turn i of every dialogue in one backend call.
"""
from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from mllm_mer.conversation.context import CONTEXT_LABELS, DEFAULT_CONTEXT_WINDOW, context_for
from mllm_mer.core.parsing import label_so_far
from mllm_mer.core.types import Prediction, Sample
from mllm_mer.media.windows import shared_windows
from mllm_mer.pipeline.answer import Answered, answer_run, finish
from mllm_mer.pipeline.inflight import InFlight
from mllm_mer.pipeline.stream import answer_stream, streams_answers
from mllm_mer.stages.prepare import Prepared, prepare
from mllm_mer.strategies import RunContext

OnTurn = Callable[[list[Sample], list[Answered]], None]


def _turns_at(step: int, talk: _Dialogues) -> tuple[list[Sample], list[int]]:
    """The samples of turn `step` still to answer (with their context), and the dialogue each is from."""
    batch, owners = [], []
    for k, turns in enumerate(talk.dialogues):
        if step >= len(turns):
            continue
        sample = talk.turn(k, step)
        if sample.id in talk.done:
            talk.results[k][step] = talk.done[sample.id]
        else:
            batch.append(sample)
            owners.append(k)
    return batch, owners


def classify_dialogues(backend, dialogues: Sequence[Sequence[Sample]], run: RunContext, context_labels: str,
                       window: int = DEFAULT_CONTEXT_WINDOW, task: str = "emotion",
                       done: dict[str, Prediction] | None = None,
                       on_turn: OnTurn | None = None, batch_size: int | None = None,
                       continuous: bool = True, prefetch: int = 32, bets: bool = True) -> list[list[Prediction]]:
    """Predictions for every turn: each dialogue on its own where the backend streams (and `continuous`),
    else turn i of every dialogue in one backend call (in chunks of `batch_size`). With `bets` (where the
    backend `can_peek`) a turn goes out once its previous answer has written its label (`_Chains`).

    `done` holds predictions already made (a resumed run): those turns are not asked again, and
    their labels still feed the context of later turns. `on_turn(samples, answered)` sees each
    turn (or chunk) as it finishes (prediction and prompt), to write it down at once. At most `prefetch`
    turns are in flight at a time.
    """
    if context_labels not in CONTEXT_LABELS:
        raise ValueError(f"context labels must be one of {', '.join(CONTEXT_LABELS)}, not {context_labels!r}")
    talk = _Dialogues(dialogues, context_labels, window, task, dict(done or {}))
    setup, streams = run.setup, continuous and streams_answers(backend, run)
    if streams and context_labels != "predicted":  # no turn waits for another's answer
        _all_at_once(backend, talk, run, on_turn, prefetch)
        return talk.results  # type: ignore[return-value]
    # The turns of a recording are windows of one file: one decoding pass serves them all.
    with shared_windows([s for d in dialogues for s in d if s.id not in talk.done], setup.media, setup.modalities):
        if streams:
            _each_on_its_own(backend, talk, run, on_turn, prefetch, bets and backend.can_peek)
        else:
            _in_lockstep(backend, talk, run, on_turn, batch_size)
    return talk.results  # type: ignore[return-value]


@dataclass
class _Dialogues:
    """The dialogues being answered: each turn's prediction, and the label its later turns see for it."""

    dialogues: Sequence[Sequence[Sample]]
    context_labels: str
    window: int
    task: str
    done: dict[str, Prediction]

    def __post_init__(self):
        self.results: list[list[Prediction | None]] = [[None] * len(d) for d in self.dialogues]
        self.given: list[list[str | None]] = [  # gold labels are known before any turn is answered
            [s.gold.get(self.task) if self.context_labels == "gold" else None for s in d] for d in self.dialogues]

    def turn(self, k: int, step: int) -> Sample:
        """Turn `step` of dialogue `k`, with its context (the labels given for the turns before it)."""
        turns = self.dialogues[k]
        return replace(turns[step], context=context_for(turns, step, self.given[k], self.window))

    def answered(self, k: int, step: int, prediction: Prediction) -> None:
        self.results[k][step] = prediction
        if self.context_labels == "predicted":
            self.given[k][step] = prediction.label(self.task)


def _all_at_once(backend, talk: _Dialogues, run: RunContext, on_turn: OnTurn | None, prefetch: int) -> None:
    """Gold or no context labels: every turn's context is known at the start, so all stream together."""
    owners = {}
    for k, turns in enumerate(talk.dialogues):
        for step in range(len(turns)):
            owners[turns[step].id] = (k, step)
            if turns[step].id in talk.done:
                talk.answered(k, step, talk.done[turns[step].id])
    pending = [talk.turn(k, step) for k, step in owners.values() if talk.results[k][step] is None]
    for group in answer_stream(backend, pending, run, prefetch=prefetch):
        for sample, answered in group:
            talk.answered(*owners[sample.id], answered.prediction)
        if on_turn:
            on_turn([s for s, _ in group], [a for _, a in group])


def _each_on_its_own(backend, talk: _Dialogues, run: RunContext, on_turn: OnTurn | None, prefetch: int,
                     peeking: bool) -> None:
    """Predicted context labels: a dialogue's turn is submitted the moment its previous turn is answered, each
    dialogue on its own; at most `prefetch` turns in flight. `peeking` (the backend shows answers as they are
    written): the next turn goes out once the answer's label is complete, while the rest is still written."""
    with backend.stream(run.adapter) as stream:
        flight = InFlight(stream, backend, run)
        chains = _Chains(talk, run, on_turn, flight)
        if peeking:
            stream.watching = True
        while chains.ready or chains.owners:
            while chains.ready and stream.room and len(chains.owners) < max(prefetch, 1):
                chains.submit(*chains.ready.popleft())
            if stream.pending:
                run.on_stage(f"answering ({stream.pending} requests in flight)")
                chains.finished(flight.collect())
                if peeking:
                    chains.peeked(flight.peek())


class _Chains:
    """The turns of predicted-context dialogues in flight. A turn goes out on the label its previous answer has
    written while the rest of that answer is still written (a bet), and a turn asked on a bet is bet on in
    turn, so a dialogue advances at the pace its labels are written, not its whole answers. When a turn
    settles with the label bet on, the turn after it stands (if it finished first it was held, and is given out
    then); with another label (an answer that fails after its label), every later turn of the dialogue is
    dropped and asked again, so the answers are those of waiting for every turn."""

    def __init__(self, talk: _Dialogues, run: RunContext, on_turn: OnTurn | None, flight: InFlight):
        self.talk, self.run, self.on_turn, self.flight = talk, run, on_turn, flight
        self.ready = deque((k, 0) for k, turns in enumerate(talk.dialogues) if turns)
        self.owners: dict[str, tuple[int, int]] = {}  # sample in flight -> (dialogue, turn)
        self.bets: dict[int, dict[int, str]] = defaultdict(dict)  # dialogue -> turn -> label its next went on
        self.held: dict[int, dict[int, tuple[Prepared, Answered]]] = defaultdict(dict)  # finished before the
        # turn before them settled

    def submit(self, k: int, step: int) -> None:
        sample = self.talk.turn(k, step)
        if sample.id in self.talk.done:  # a resumed run: its label still feeds the context
            self._next(k, step, self.talk.done[sample.id])
            return
        [prepared] = prepare([sample], self.run.setup, self.run.on_stage, self.run.resources)
        self.owners[sample.id] = (k, step)
        self.finished(self.flight.submit(prepared) if prepared.prompt is not None else [(prepared, None)])

    def peeked(self, looks: list[tuple[Prepared, str]]) -> None:
        """Bet on the labels that answers still being written have completed."""
        for prepared, text in looks:
            if prepared.sample.id not in self.owners:
                continue
            k, step = self.owners[prepared.sample.id]
            turns = self.talk.dialogues[k]
            task = [ls for ls in prepared.prompt.label_sets if ls.task == self.talk.task]
            if step + 1 >= len(turns) or turns[step + 1].id in self.talk.done or not task:
                continue
            if step in self.bets[k] or (label := label_so_far(text, task[0])) is None:
                continue
            self.bets[k][step] = label
            self.talk.given[k][step] = label
            self.ready.append((k, step + 1))

    def finished(self, pairs) -> None:
        for prepared, prediction in pairs:
            if prepared.sample.id not in self.owners:  # called off by a turn before it, collected beside it
                continue
            k, step = self.owners.pop(prepared.sample.id)
            answered = finish(prepared, prediction, self.run.setup)
            if step - 1 in self.bets[k]:  # asked on a bet its previous turn has not settled
                self.held[k][step] = (prepared, answered)
            else:
                self._settle(k, step, prepared, answered)

    def _settle(self, k: int, step: int, prepared: Prepared, answered: Answered) -> None:
        bet = self.bets[k].pop(step, None)
        if self.on_turn:
            self.on_turn([prepared.sample], [answered])
        if bet is None:
            self._next(k, step, answered.prediction)
            return
        self.talk.answered(k, step, answered.prediction)
        if bet == answered.prediction.label(self.talk.task):
            if (held := self.held[k].pop(step + 1, None)) is not None:
                self._settle(k, step + 1, *held)
            return
        self._call_off(k, step + 1)  # another label than the one bet on: ask the next turn again
        self.ready.append((k, step + 1))

    def _next(self, k: int, step: int, prediction: Prediction) -> None:
        self.talk.answered(k, step, prediction)
        if self.talk.context_labels == "predicted" and step + 1 < len(self.talk.dialogues[k]):
            self.ready.append((k, step + 1))

    def _call_off(self, k: int, step: int) -> None:
        """Forget turn `step` of dialogue `k` and every later one: each was asked on a label not kept."""
        for later in range(step, len(self.talk.dialogues[k])):
            self.bets[k].pop(later, None)
            self.held[k].pop(later, None)
            if (sample_id := self.talk.dialogues[k][later].id) in self.owners:
                self.flight.drop(sample_id)
                del self.owners[sample_id]
        self.ready = deque((d, t) for d, t in self.ready if d != k or t < step)


def _in_lockstep(backend, talk: _Dialogues, run: RunContext, on_turn: OnTurn | None, batch_size: int | None) -> None:
    """Turn i of every dialogue in one backend call (in chunks of `batch_size`)."""
    dialogues, results = talk.dialogues, talk.results
    for step in range(max((len(d) for d in dialogues), default=0)):
        batch, owners = _turns_at(step, talk)
        size = batch_size or max(1, len(batch))
        for start in range(0, len(batch), size):
            chunk = batch[start:start + size]
            answered = answer_run(backend, chunk, run)
            for k, a in zip(owners[start:start + size], answered, strict=True):
                results[k][step] = a.prediction
            if on_turn:
                on_turn(chunk, answered)
        for k, turns in enumerate(dialogues):
            if step < len(turns):
                talk.answered(k, step, results[k][step])
