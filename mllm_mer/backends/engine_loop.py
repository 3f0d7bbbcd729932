"""One request loop per vLLM engine: requests are added as they come and collected as each finishes.

`LLM.generate` adds a batch and runs the engine until it drains. A caller that keeps
adding work while the engine runs (evaluate's continuous submission) and one that waits
for its own answers in between (label scoring of a finished answer) would then take each
other's outputs. Here every caller adds requests under ids of its own and takes back only
those; outputs that finish while another caller waits are kept for their owner. A watched
request also leaves its text so far after each step (`partial`), for a caller that acts on
an answer's first field before the rest is written.
"""
from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any


def refused(error: Exception) -> ValueError | None:
    """The engine's refusal of one input (too long, bad media) as a ValueError; None for other errors."""
    from vllm.exceptions import VLLMClientError

    if isinstance(error, (VLLMClientError, ValueError)) or type(error).__module__.startswith("vllm"):
        return ValueError(str(error))
    return None


class EngineLoop:
    def __init__(self, llm: Any):
        self.engine = llm.llm_engine
        self._ids = itertools.count()
        self._open: set[str] = set()
        self._finished: dict[str, Any] = {}
        self._watched: set[str] = set()
        self._partial: dict[str, str] = {}  # watched request id -> its text so far (since last taken)

    def add(self, request: dict[str, Any], params: Any, lora: Any = None, watch: bool = False) -> str:
        """Queue one request; an input the engine refuses raises ValueError and queues nothing. A watched one
        leaves its text so far after every step (`partial`)."""
        from vllm.sampling_params import RequestOutputKind

        request_id = f"mer-{next(self._ids)}"
        # One output per request, when it is done; a watched one also gives its text so far at each step.
        params.output_kind = RequestOutputKind.CUMULATIVE if watch else RequestOutputKind.FINAL_ONLY
        try:
            self.engine.add_request(request_id, request, params, lora_request=lora)
        except Exception as error:
            mapped = refused(error)
            if mapped is None:
                raise
            raise mapped from None
        self._open.add(request_id)
        if watch:
            self._watched.add(request_id)
        return request_id

    def step(self) -> None:
        """One engine step; finished outputs are kept until their owner takes them. Nothing when the
        engine is idle (a waiting caller may already have collected every output: stepping an idle
        engine would block for ever)."""
        if not self._open:
            return
        for output in self.engine.step():
            if output.request_id not in self._open:
                continue
            if output.finished:
                self._open.discard(output.request_id)
                self._watched.discard(output.request_id)
                self._partial.pop(output.request_id, None)
                self._finished[output.request_id] = output
            elif output.request_id in self._watched:
                self._partial[output.request_id] = output.outputs[0].text

    def partial(self, ids: Sequence[str]) -> dict[str, str]:
        """The text so far of the watched requests among `ids` that wrote more since the last call."""
        return {i: self._partial.pop(i) for i in ids if i in self._partial}

    def take(self, ids: Sequence[str]) -> dict[str, Any]:
        """The finished outputs among `ids` (removed from the loop)."""
        return {i: self._finished.pop(i) for i in ids if i in self._finished}

    def wait(self, ids: Sequence[str]) -> list[Any]:
        """Step until every request in `ids` has finished; their outputs, in the order of `ids`."""
        while any(i not in self._finished for i in ids):
            if not self.engine.has_unfinished_requests():
                raise RuntimeError("the engine has no work left but requests are unanswered")
            self.step()
        return [self._finished.pop(i) for i in ids]

    def run(self, requests: Sequence[dict[str, Any]], params: Sequence[Any], lora: Any = None) -> list[Any]:
        """Add all, wait for all: `LLM.generate` without taking anybody else's outputs."""
        ids: list[str] = []
        try:
            for request, p in zip(requests, params, strict=True):
                ids.append(self.add(request, p, lora))
        except BaseException:
            self.abort(ids)
            raise
        return self.wait(ids)

    def abort(self, ids: Sequence[str]) -> None:
        live = [i for i in ids if i in self._open]
        if live:
            self.engine.abort_request(live)
            self._open.difference_update(live)
        for i in ids:
            self._finished.pop(i, None)
            self._partial.pop(i, None)
            self._watched.discard(i)
