"""The samples a stream is answering, each request sent the moment it can be.

A sample is either one generated answer, or (where its strategy's requests are all label scorings: score
mode, fusion's experts) a set of named scorings, each a chain of requests task after task (`ScoreChain`):
a chain's next task goes out the moment the one before it is read, and the strategy builds the sample's
prediction once every one of its scorings is done (`Strategy.from_scorings`).
"""
from __future__ import annotations

import itertools
from typing import Any

from mllm_mer.core.types import Prediction, TaskPrediction
from mllm_mer.stages.prepare import Prepared
from mllm_mer.stages.scoring import INPUT_ERRORS, ScoreChain, read_answer, refused
from mllm_mer.strategies import RunContext

Scored = dict[str, TaskPrediction] | Exception


class InFlight:
    def __init__(self, stream: Any, run: RunContext, scorings: bool, limit: int | None):
        self.stream, self.run, self.scorings, self.limit = stream, run, scorings, limit
        self.held: dict[int, Prepared] = {}
        self.jobs: dict[int, int] = {}  # sample key -> its number of scorings
        self.results: dict[int, dict[str, Scored]] = {}  # sample key -> scoring name -> its result
        self.chains: dict[tuple[int, str], ScoreChain] = {}
        self.keys = itertools.count()

    def submit(self, prepared: Prepared) -> Prediction | None:
        """Queue one prepared sample; its prediction at once when the backend refused all of it."""
        key = next(self.keys)
        self.held[key] = prepared
        if not self.scorings:
            try:
                self.stream.submit(key, prepared.prompt)
            except INPUT_ERRORS as error:
                del self.held[key]
                return refused(prepared.prompt, error)
            return None
        jobs = self.run.strategy.scorings(prepared, self.run)
        self.jobs[key], self.results[key] = len(jobs), {}
        for name, prompt in jobs:
            chain = self.chains[(key, name)] = ScoreChain(prompt)
            self._send((key, name), chain)
        prediction = self._done(key)
        if prediction is not None:
            del self.held[key]
        return prediction

    def collect(self) -> list[tuple[Prepared, Prediction]]:
        """One round of the stream: the samples whose answer (or every scoring) is done."""
        finished = []
        for key, raw in self.stream.collect():
            if isinstance(raw, Exception) and not isinstance(raw, INPUT_ERRORS):
                raise raw
            if not self.scorings:
                prepared = self.held.pop(key)
                finished.append((prepared, read_answer(prepared.prompt, raw, self.limit)))
                continue
            chain = self.chains[key]
            if isinstance(raw, Exception):
                self._settle(key, raw)
            elif chain.take(raw):
                self._settle(key, chain.tasks)
            else:
                self._send(key, chain)
            prediction = self._done(key[0])
            if prediction is not None:
                finished.append((self.held.pop(key[0]), prediction))
        return finished

    def _send(self, key: tuple[int, str], chain: ScoreChain) -> None:
        try:
            self.stream.submit_score(key, chain.prompt, chain.candidates())
        except INPUT_ERRORS as error:
            self._settle(key, error)

    def _settle(self, key: tuple[int, str], result: Scored) -> None:
        del self.chains[key]
        self.results[key[0]][key[1]] = result

    def _done(self, key: int) -> Prediction | None:
        """The sample's prediction once all its scorings are settled (the sample leaves the books); else None."""
        if len(self.results[key]) < self.jobs[key]:
            return None
        del self.jobs[key]
        return self.run.strategy.from_scorings(self.held[key], self.results.pop(key), self.run)
