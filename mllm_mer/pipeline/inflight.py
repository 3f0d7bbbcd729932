"""The samples a stream is answering: each sample's flow (`stages.requests`) driven request by request.

A sample's strategy describes its requests as a flow; the scheduler owns the engine. Each request goes
out the moment its flow yields it, so a sample's next step (its next agent action, its scoring after its
reasoning, its next task's labels) waits only for its own last one, never for another sample's. `Together`
starts its flows side by side (a sample's experts, its draws); the flow that asked resumes once every one
of them has given its result. A request the backend refuses gives its flow the error (the flow fails that
sample alone); any other error stops the run, which resumes later.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from mllm_mer.core.types import Prediction
from mllm_mer.stages.orders import label_first_flow
from mllm_mer.stages.prepare import Prepared
from mllm_mer.stages.requests import Ask, Flow, Request, Score, Think, Together
from mllm_mer.stages.scoring import INPUT_ERRORS
from mllm_mer.strategies import RunContext


@dataclass
class _Node:
    """A running flow: a sample's own (no parent), or one of the flows a `Together` started."""

    flow: Flow
    parent: int | None = None
    slot: int = 0
    results: list[Any] | None = None  # a Together's results, by slot, while its flows run
    waiting: int = 0


class InFlight:
    def __init__(self, stream: Any, backend: Any, run: RunContext):
        self.stream, self.backend, self.run = stream, backend, run
        self.nodes: dict[int, _Node] = {}
        self.held: dict[int, Prepared] = {}  # a sample's node -> the sample
        self.finished: list[tuple[Prepared, Prediction]] = []
        self.ids = itertools.count()

    def submit(self, prepared: Prepared) -> list[tuple[Prepared, Prediction]]:
        """Start one prepared sample's flow; what finished meanwhile (it, when the backend refused all of it)."""
        key = next(self.ids)
        self.held[key] = prepared
        self.nodes[key] = _Node(self._sample_flow(prepared))
        self._advance(key, None)
        return self._take()

    def collect(self) -> list[tuple[Prepared, Prediction]]:
        """One round of the stream: each result goes to its flow; the samples whose flow has finished."""
        for key, result in self.stream.collect():
            if isinstance(result, Exception) and not isinstance(result, INPUT_ERRORS):
                raise result
            self._advance(key, result)
        return self._take()

    def peek(self) -> list[tuple[Prepared, str]]:
        """(sample, its answer's text so far) for the samples whose own answer (not a step a strategy took on
        the way) wrote more since the last look; only on a `PeekingStream` that is `watching`."""
        return [(self.held[key], text) for key, text in self.stream.peek()
                if key in self.nodes and self.nodes[key].parent is None]

    def drop(self, sample_id: str) -> None:
        """Stop a sample: its requests are aborted and nothing of it is collected (nothing to do once it has
        been collected)."""
        roots = [key for key, prepared in self.held.items() if prepared.sample.id == sample_id]
        if not roots:
            return
        [root] = roots
        for key in [k for k in self.nodes if self._root(k) == root]:
            self.stream.drop(key)
            del self.nodes[key]
        del self.held[root]

    def _root(self, key: int) -> int:
        while (parent := self.nodes[key].parent) is not None:
            key = parent
        return key

    def _sample_flow(self, prepared: Prepared) -> Flow:
        prediction = yield from self.run.strategy.flow(self.backend, prepared, self.run)
        if self.run.compare_orders and prediction.reasoning is not None:
            yield from label_first_flow(prepared, prediction, self.run.setup)
        return prediction

    def _advance(self, key: int, result: Any) -> None:
        """Give a flow its result; send what it asks next, start the flows it asks for, or finish it."""
        node = self.nodes[key]
        try:
            request = node.flow.send(result)
        except StopIteration as stop:
            self._finish(key, stop.value)
            return
        if isinstance(request, Together):
            flows = list(request.flows)
            node.results, node.waiting = [None] * len(flows), len(flows)
            if not flows:
                self._advance(key, [])
            for slot, flow in enumerate(flows):
                child = next(self.ids)
                self.nodes[child] = _Node(flow, key, slot)
                self._advance(child, None)
            return
        try:
            self._send(key, request)
        except INPUT_ERRORS as error:  # refused before it was queued
            self._advance(key, error)

    def _send(self, key: int, request: Request) -> None:
        if isinstance(request, Ask):
            self.stream.submit(key, request.prompt, request.temperature, request.seed)
        elif isinstance(request, Think):
            self.stream.submit_think(key, request.prompt, request.temperature, request.seed)
        elif isinstance(request, Score):
            self.stream.submit_score(key, request.prompt, request.texts)
        else:
            raise TypeError(f"a flow asked for {request!r}, which is no request")

    def _finish(self, key: int, value: Any) -> None:
        node = self.nodes.pop(key)
        if node.parent is None:
            self.finished.append((self.held.pop(key), value))
            return
        parent = self.nodes[node.parent]
        parent.results[node.slot] = value
        parent.waiting -= 1
        if parent.waiting == 0:
            results, parent.results = parent.results, None
            self._advance(node.parent, results)

    def _take(self) -> list[tuple[Prepared, Prediction]]:
        finished, self.finished = self.finished, []
        return finished
