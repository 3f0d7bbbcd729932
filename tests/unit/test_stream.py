"""Continuous submission's bookkeeping (pure logic): the feed that prepares ahead, the continuous loop and the
bounded request pool. The backend here is a scripted stand-in, named as such; the real engine and server are
exercised by test_evaluate (vLLM engine, kill -9 and resume) and test_serve (OpenAI server)."""
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest

from mllm_mer.backends.openai_client import ConcurrentStream
from mllm_mer.core.labels import load_label_scheme
from mllm_mer.core.types import PromptSetup, Sample
from mllm_mer.pipeline import answer_stream
from mllm_mer.stages.feed import PreparedFeed
from mllm_mer.strategies import RunContext


def scripted_logps(prompt, texts):
    """A stand-in's log-probabilities: fixed per sample and candidate text, different across candidates."""
    return [-1.0 - (sum(map(ord, prompt.sample_id + text)) % 7) / 3 for text in texts]


class ScriptedStreamStandIn:
    """Stand-in for a streaming backend: answers in reverse order of submission, one per `collect`,
    refuses prompts whose text says REFUSE, and scores labels by `scripted_logps`, in batches (`score`) or
    one scoring at a time through the stream (`submit_score`)."""

    name = "scripted"
    can_stream = True
    can_stream_scores = True

    def __init__(self):
        self.submitted, self.scored, self.streamed_scores = [], [], []

    @contextmanager
    def stream(self, adapter=None):
        outer = self

        class Stream:
            room = True
            queue: list = []

            @property
            def pending(self):
                return len(self.queue)

            def submit(self, key, prompt, temperature=0.0, seed=None):
                if "REFUSE" in json.dumps(prompt.messages):
                    raise ValueError("prompt too long for the engine")
                outer.submitted.append(prompt.sample_id)
                self.queue.append((key, prompt))

            def submit_score(self, key, prompt, texts):
                self.submit(key, prompt)
                outer.streamed_scores.append((prompt.sample_id, texts[0]))
                self.queue[-1] = (key, prompt, texts)

            def collect(self):
                key, prompt, *texts = self.queue.pop()
                if texts:
                    return [(key, scripted_logps(prompt, texts[0]))]
                answer = {ls.task: ls.labels[len(prompt.sample_id) % len(ls.labels)] for ls in prompt.label_sets}
                return [(key, json.dumps({**answer, "rationale": "scripted"}))]

        yield Stream()

    def score(self, requests, adapter=None):
        if any("REFUSE" in json.dumps(p.messages) for p, _ in requests):
            raise ValueError("prompt too long for the engine")
        self.scored += [p.sample_id for p, _ in requests]
        return [scripted_logps(p, candidates) for p, candidates in requests]


def samples(n, tmp_path):
    found = [Sample(id=f"s{i}", transcript=f"line {i}") for i in range(n)]
    found[3] = Sample(id="s3", transcript="REFUSE this one")
    found[5] = Sample(id="s5", transcript="a clip that is gone", video=str(tmp_path / "missing.mp4"))
    return found


@pytest.mark.parametrize("probabilities", [False, True])
def test_continuous_answers_every_sample_once_and_fails_only_the_bad_ones(tmp_path, probabilities):
    backend, setup = ScriptedStreamStandIn(), PromptSetup(load_label_scheme("meld"), modalities=("text",))
    given = samples(12, tmp_path)
    groups = list(answer_stream(backend, given, RunContext(setup, probabilities=probabilities), prefetch=4))
    got = {s.id: a.prediction for group in groups for s, a in group}
    assert sorted(got) == sorted(s.id for s in given) and sum(map(len, groups)) == len(given)
    assert [s.id for group in groups for s, _ in group] != [s.id for s in given]  # completion order, not input order
    assert not got["s3"].ok and got["s3"].error_kind == "backend" and "too long" in got["s3"].error
    assert not got["s5"].ok and got["s5"].error_kind == "media"
    ok = [i for i, p in got.items() if p.ok]
    assert len(ok) == 10 and all(got[i].label("emotion") for i in ok)
    # Each answer's labels scored through the stream as it came back: emotion, then sentiment.
    assert backend.scored == [] and sorted(s for s, _ in backend.streamed_scores) == (
        sorted(ok * 2) if probabilities else [])
    if probabilities:
        assert all(abs(sum(got[i].tasks["emotion"].probabilities.values()) - 1) < 1e-9 for i in ok)


def test_continuous_score_mode_chains_each_samples_tasks_and_equals_the_batched_path(tmp_path):
    given = samples(12, tmp_path)
    setup = PromptSetup(load_label_scheme("meld"), modalities=("text",), mode="score")
    runs, backends = {}, {}
    for continuous in (True, False):
        backend = backends[continuous] = ScriptedStreamStandIn()
        groups = answer_stream(backend, given, RunContext(setup), prefetch=4, continuous=continuous, batch_size=4)
        runs[continuous] = {s.id: a.prediction for group in groups for s, a in group}
    assert runs[True].keys() == runs[False].keys() == {s.id for s in given}
    assert backends[True].scored == [] and backends[False].streamed_scores == []  # each path used its own way
    ok = [i for i, p in runs[True].items() if p.ok]
    assert len(ok) == 10
    for i, want in runs[False].items():
        got = runs[True][i]
        assert (got.ok, got.error_kind) == (want.ok, want.error_kind)
        if not want.ok:
            continue
        assert {t: (tp.label, tp.probabilities) for t, tp in got.tasks.items()} == \
            {t: (tp.label, tp.probabilities) for t, tp in want.tasks.items()}
        # Emotion, then sentiment scored after the emotion chosen: the chain's second request carries it.
        texts = [text for sample, text in backends[True].streamed_scores if sample == i]
        assert len(texts) == 2 and f'"{got.tasks["emotion"].label}"' in texts[1] and "sentiment" in texts[1]


def test_the_feed_prepares_ahead_in_input_order_within_its_bound(tmp_path):
    setup = PromptSetup(load_label_scheme("meld"), modalities=("text",))
    with PreparedFeed(samples(20, tmp_path), setup, workers=2, lookahead=3) as feed:
        assert feed.held == 3
        order = []
        while (item := feed.next()) is not None:
            assert feed.held <= 3
            order.append(item.sample.id)
        assert order == [f"s{i}" for i in range(20)] and feed.exhausted


def test_the_request_pool_keeps_its_bound_and_returns_every_answer():
    """The pool has a thread more than the bound, so only the stream holds requests back. Each request runs
    until the test releases it (events, not sleeps): the newest in flight first, so answers come back out of
    submission order, and the order is known."""
    started = {n: threading.Event() for n in range(12)}
    release = {n: threading.Event() for n in range(12)}
    active, peak, lock = [0], [0], threading.Lock()

    def request_stand_in(prompt, temperature, seed):  # a server call that answers when the test says so
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        started[prompt].set()
        assert release[prompt].wait(timeout=60)
        with lock:
            active[0] -= 1
        if prompt == 7:
            raise ValueError("refused")
        return f"answer {prompt}"

    with ThreadPoolExecutor(4) as pool:
        stream, todo, got, order = ConcurrentStream(request_stand_in, 3, pool), list(range(12)), {}, []
        while todo or stream.pending:
            while stream.room and todo:
                n = todo.pop(0)
                stream.submit(n, n)  # a greedy answer (temperature 0, no seed)
            in_flight = [n for n in range(12) if n not in todo and n not in got]
            assert len(in_flight) == stream.pending <= 3
            assert all(started[n].wait(timeout=60) for n in in_flight)  # every one submitted is running
            release[in_flight[-1]].set()
            while in_flight[-1] not in got:
                for key, answer in stream.collect():
                    got[key] = answer
                    order.append(key)
    assert peak[0] == 3
    assert order == [*range(2, 12), 1, 0]  # one answer per release, in the order released
    assert isinstance(got.pop(7), ValueError) and got == {n: f"answer {n}" for n in range(12) if n != 7}
