"""Predicted-context dialogues on a backend that shows answers as they are written (pure logic): a turn goes out
once its previous turn's answer has written its label, and the answers are those of waiting for every turn, also
when an answer finishes with another label than the one it first wrote. The backend is a scripted stand-in,
named as such; the vLLM engine is exercised by tests/integration/test_dialogue.py."""
import hashlib
import json
from contextlib import contextmanager

import pytest

from mllm_mer.core.labels import load_label_scheme
from mllm_mer.core.types import PromptSetup, Sample
from mllm_mer.pipeline.dialogue import classify_dialogues
from mllm_mer.strategies import RunContext

CHUNK = 6  # characters an answer writes per engine step


def scripted_answer(prompt, pad: int = 0) -> str:
    """The stand-in's answer: labels picked by a hash of the whole prompt (so by the context labels too), `pad`
    spaces after the first (a long tail still to write once the label is written)."""
    digest = hashlib.sha256(json.dumps(prompt.messages, sort_keys=True).encode()).digest()
    fields = [f'"{ls.task}":"{ls.labels[digest[i] % len(ls.labels)]}"' for i, ls in enumerate(prompt.label_sets)]
    return "{" + ("," + " " * pad).join(fields) + "}"


class WritingStreamStandIn:
    """Stand-in for the vLLM engine's stream: every submitted answer is written CHUNK characters per `collect`,
    and `peek` shows the text so far. A turn in `flip` first writes another emotion than the one it finishes
    with (as an answer that fails after its label would); a turn in `pad` writes that many spaces after it."""

    name = "scripted-writer"
    can_stream = True
    can_stream_scores = True
    can_peek = True

    def __init__(self, flip=(), pad=None):
        self.flip, self.pad, self.log, self.dropped = set(flip), pad or {}, [], []

    def generate(self, prompts, adapter=None, temperature=0.0, seeds=None):
        return [scripted_answer(p) for p in prompts]

    @contextmanager
    def stream(self, adapter=None):
        outer = self

        class Stream:
            room, watching = True, False

            def __init__(self):
                self.writing = {}  # key -> [text written so far, final text, shown first]

            @property
            def pending(self):
                return len(self.writing)

            def submit(self, key, prompt, temperature=0.0, seed=None):
                pad = outer.pad.get(prompt.sample_id, 0)
                final = shown = scripted_answer(prompt, pad)
                if prompt.sample_id in outer.flip:  # writes "neutral" (or "joy") first, finishes with its own
                    other = "joy" if '"emotion":"neutral"' in final else "neutral"
                    shown = '{"emotion":"' + other + '",' + " " * pad
                outer.log.append(("submit", prompt.sample_id))
                self.writing[key] = ["", final, shown, prompt.sample_id]

            def collect(self):
                done = []
                for key, entry in list(self.writing.items()):
                    entry[0] = entry[2][:len(entry[0]) + CHUNK] if len(entry[0]) < len(entry[2]) else entry[1]
                    if entry[0] == entry[1]:
                        done.append((key, entry[1]))
                        outer.log.append(("done", self.writing.pop(key)[3]))
                return done

            def peek(self):
                return [(key, entry[0]) for key, entry in self.writing.items() if self.watching]

            def drop(self, key):
                outer.dropped.append(key)
                del self.writing[key]

        yield Stream()


def dialogues():
    return [[Sample(id=f"d{d}t{t}", transcript=f"dialogue {d} turn {t}", speaker="AB"[t % 2]) for t in range(n)]
            for d, n in enumerate((4, 1, 3))]


def run_both(flip=(), pad=None):
    setup = PromptSetup(load_label_scheme("meld"), template="label_only", modalities=("text",))
    run = RunContext(setup, probabilities=False)
    backend, seen = WritingStreamStandIn(flip, pad), []
    betting = classify_dialogues(backend, dialogues(), run, "predicted", window=-1,
                                 on_turn=lambda batch, _: seen.extend(batch))
    waiting = classify_dialogues(backend, dialogues(), run, "predicted", window=-1, continuous=False)
    return backend, seen, betting, waiting


def labels(results):
    return [[p.label("emotion") for p in d] for d in results]


def asked_before_its_previous_turn_finished(log) -> list[str]:
    done, early = set(), []
    for event, sample in log:
        d, t = (int(x) for x in sample[1:].split("t"))
        if event == "done":
            done.add(sample)
        elif t and f"d{d}t{t - 1}" not in done:
            early.append(sample)
    return early


def test_a_turn_goes_out_once_its_previous_answer_has_written_its_label_and_the_answers_equal_waiting():
    backend, seen, betting, waiting = run_both(pad={"d0t0": 120})  # d0t1 finishes before d0t0 does
    assert labels(betting) == labels(waiting) and all(p.ok for d in betting for p in d)
    assert "d0t1" in asked_before_its_previous_turn_finished(backend.log) and not backend.dropped
    assert [e for e in backend.log if e[1] in ("d0t0", "d0t1")] == [
        ("submit", "d0t0"), ("submit", "d0t1"), ("done", "d0t1"), ("done", "d0t0")]
    ids = [s.id for s in seen]
    assert sorted(ids) == sorted(s.id for d in dialogues() for s in d)  # each turn given out once,
    assert ids.index("d0t0") < ids.index("d0t1")  # in its dialogue's order
    for sample in seen:  # each context holds the labels finally given for the earlier turns
        d, t = (int(x) for x in sample.id[1:].split("t"))
        assert [turn.emotion for turn in sample.context] == labels(betting)[d][:t]


@pytest.mark.parametrize("pad, in_flight", [(0, True), (120, False)])
def test_a_turn_asked_on_a_label_its_previous_answer_did_not_keep_is_asked_again(pad, in_flight):
    """The next turn is dropped from the engine when still being written, or forgotten when it finished first."""
    backend, seen, betting, waiting = run_both(flip=("d0t0",), pad={"d0t0": pad})
    assert labels(betting) == labels(waiting)
    assert len(backend.dropped) == in_flight
    assert [s for e, s in backend.log if e == "submit"].count("d0t1") == 2
    assert [s.id for s in seen].count("d0t1") == 1  # the turn asked on the wrong label is never given out
    d0t1 = next(s for s in seen if s.id == "d0t1")
    assert [turn.emotion for turn in d0t1.context] == labels(betting)[0][:1]


LONG_TAILS = {"d0t0": 120, "d0t1": 120, "d0t2": 120}  # each label written long before its answer ends


def test_a_turn_asked_on_a_bet_is_bet_on_in_turn_so_a_dialogue_moves_at_the_pace_its_labels_are_written():
    backend, seen, betting, waiting = run_both(pad=LONG_TAILS)
    assert labels(betting) == labels(waiting) and not backend.dropped
    log = backend.log
    assert log.index(("submit", "d0t3")) < log.index(("done", "d0t0"))  # three turns out on unsettled labels
    assert [s.id for s in seen if s.id.startswith("d0")] == ["d0t0", "d0t1", "d0t2", "d0t3"]


def test_a_label_not_kept_calls_off_every_turn_asked_after_it():
    backend, seen, betting, waiting = run_both(flip=("d0t0",), pad=LONG_TAILS)
    assert labels(betting) == labels(waiting)
    asked = [s for e, s in backend.log if e == "submit"]
    assert all(asked.count(t) == 2 for t in ("d0t1", "d0t2", "d0t3"))
    assert len(backend.dropped) == 2  # d0t1, d0t2 dropped while written; d0t3 (short) had finished: held, forgotten
    assert [s.id for s in seen if s.id.startswith("d0")] == ["d0t0", "d0t1", "d0t2", "d0t3"]
    for sample in seen:
        d, t = (int(x) for x in sample.id[1:].split("t"))
        assert [turn.emotion for turn in sample.context] == labels(betting)[d][:t]


@pytest.mark.parametrize("pad", [34, 46, 70])
def test_a_turn_called_off_by_the_turn_before_it_in_the_same_collect_is_forgotten_and_asked_again(pad):
    """With these tails d0t0 (which keeps another label than it first wrote) and d0t1, asked on that label, finish
    in the same engine step: d0t1 is called off although the engine has already handed it back."""
    backend, seen, betting, waiting = run_both(flip=("d0t0",), pad={"d0t0": pad})
    assert labels(betting) == labels(waiting)
    assert [s for e, s in backend.log if e == "submit"].count("d0t1") == 2
    assert [s.id for s in seen].count("d0t1") == 1
    for sample in seen:
        d, t = (int(x) for x in sample.id[1:].split("t"))
        assert [turn.emotion for turn in sample.context] == labels(betting)[d][:t]
