"""Answers for many samples, in groups as they finish: media prepared ahead, the engine kept full."""
from __future__ import annotations

from collections.abc import Iterator, Sequence

from mllm_mer.backends.base import Backend
from mllm_mer.core.types import Prediction, Sample
from mllm_mer.pipeline.answer import Answered, answer_prepared, finish
from mllm_mer.pipeline.inflight import InFlight
from mllm_mer.stages.feed import PreparedFeed
from mllm_mer.stages.prepare import Prepared
from mllm_mer.strategies import RunContext


def streams_answers(backend: Backend, run: RunContext) -> bool:
    """Whether `answer_stream` can submit continuously: a strategy that describes each sample's requests as a
    flow (every strategy: single, agent, fusion, self-consistency; reasoning first or not), on a backend that
    takes requests one by one, label scorings included (vLLM engine, OpenAI server). Faithfulness re-scores
    each answer without each modality: it goes in batches."""
    return (backend.can_stream and backend.can_stream_scores and run.strategy.can_stream(run.setup.mode)
            and not run.faithfulness)


def answer_stream(backend: Backend, samples: Sequence[Sample], run: RunContext, batch_size: int = 16,
                  continuous: bool = True, prefetch: int = 32, media_workers: int | None = None
                  ) -> Iterator[list[tuple[Sample, Answered]]]:
    """Answers for many samples, in groups as they finish (not in input order).

    Media and prompts are prepared ahead by a bounded pool (`PreparedFeed`) while the backend
    works. Where the backend and strategy allow it (`streams_answers`) and `continuous` is on,
    each prompt is submitted as soon as it is ready and each answer comes back as it finishes
    (with its label probabilities, if asked, scored right then while the other requests keep
    running); otherwise `batch_size` samples at a time go through `answer_prepared`.
    """
    with PreparedFeed(samples, run.setup, run.resources, media_workers, max(prefetch, 1)) as feed:
        if continuous and streams_answers(backend, run):
            yield from _answer_continuously(backend, feed, run)
            return
        while chunk := feed.take(batch_size):
            answered = answer_prepared(backend, chunk, run)
            yield [(p.sample, a) for p, a in zip(chunk, answered, strict=True)]


def _submit_ready(flight: InFlight, feed: PreparedFeed, finished: list) -> None:
    """Submit prepared samples while the backend has room; waits for the feed only when it has nothing to do."""
    stream = flight.stream
    while stream.room and not feed.exhausted:
        prepared = feed.next(block=stream.pending == 0 and not finished)
        if prepared is None:
            return
        if prepared.prompt is None:
            finished.append((prepared, None))
            continue
        finished += flight.submit(prepared)


def _answer_continuously(backend: Backend, feed: PreparedFeed, run: RunContext
                         ) -> Iterator[list[tuple[Sample, Answered]]]:
    with backend.stream(run.adapter) as stream:
        flight = InFlight(stream, backend, run)
        while not (feed.exhausted and stream.pending == 0):
            finished: list[tuple[Prepared, Prediction | None]] = []
            _submit_ready(flight, feed, finished)
            if stream.pending:
                run.on_stage(f"answering ({stream.pending} requests in flight)")
                finished += flight.collect()
            if finished:
                yield [(p.sample, finish(p, pred, run.setup)) for p, pred in finished]
