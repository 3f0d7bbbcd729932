"""Samples prepared ahead of the backend: media decoded while the model works on earlier samples.

A bounded pool of threads runs the media and prompt stages (PyAV and PIL release the GIL
while they decode and resize; the vLLM engine runs in processes of its own). At most
`lookahead` samples are in preparation or prepared and not yet taken, which bounds memory;
they come out in input order. Windows of one recording that several samples read (the
utterances of an episode) are served by one decoding pass per file (`media.windows`).
"""
from __future__ import annotations

import os
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack

from mllm_mer.core.types import PromptSetup, Sample
from mllm_mer.media.windows import shared_windows
from mllm_mer.stages.prepare import Prepared, prepare
from mllm_mer.stages.resources import Resources


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


class PreparedFeed:
    def __init__(self, samples: Sequence[Sample], setup: PromptSetup, resources: Resources | None = None,
                 workers: int | None = None, lookahead: int = 32):
        if lookahead < 1:
            raise ValueError(f"prefetch must be at least 1 (got {lookahead})")
        self.setup, self.resources, self.lookahead = setup, resources, lookahead
        self._open = ExitStack()
        self._open.enter_context(shared_windows(samples, setup.media, setup.modalities))
        self._todo = iter(samples)
        self._queue: deque[Future] = deque()
        self._pool = ThreadPoolExecutor(workers or default_workers(), thread_name_prefix="media")
        self._fill()

    def _prepare(self, sample: Sample) -> Prepared:
        return prepare([sample], self.setup, resources=self.resources)[0]

    def _fill(self) -> None:
        while len(self._queue) < self.lookahead:
            sample = next(self._todo, None)
            if sample is None:
                return
            self._queue.append(self._pool.submit(self._prepare, sample))

    @property
    def held(self) -> int:
        """Samples in preparation or prepared and not yet taken (at most `lookahead`)."""
        return len(self._queue)

    @property
    def exhausted(self) -> bool:
        return not self._queue

    def next(self, block: bool = True):
        """The next prepared sample (`Prepared`), or None when the feed is exhausted or, with
        `block=False`, when the next one is not ready yet. A stage's own error (not a media
        failure, which the Prepared carries) is raised here."""
        if not self._queue or (not block and not self._queue[0].done()):
            return None
        prepared = self._queue.popleft().result()
        self._fill()
        return prepared

    def take(self, n: int) -> list:
        """Up to `n` prepared samples, waiting for each."""
        taken = []
        while len(taken) < n and (item := self.next()) is not None:
            taken.append(item)
        return taken

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._open.close()

    def __enter__(self) -> PreparedFeed:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
