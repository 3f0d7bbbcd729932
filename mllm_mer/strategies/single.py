"""The single strategy: one prompt, one answer (generated and parsed, or scored), after its reasoning when
the run reasons first (`stages.reasoning`)."""
from __future__ import annotations

from collections.abc import Sequence

from mllm_mer.core.types import LabelScheme, Prediction
from mllm_mer.stages.prepare import Prepared
from mllm_mer.stages.reasoning import answer_reasoned, keep_thought, thought_flow
from mllm_mer.stages.requests import Ask, Flow
from mllm_mer.stages.scoring import (
    add_probabilities,
    answer_limit,
    generate_predictions,
    probabilities_flow,
    read_answer,
    refused,
    run_prompts,
    score_flow,
)
from mllm_mer.strategies.base import BaseStrategy, RunContext


class Single(BaseStrategy):
    name = "single"
    reasons = True
    reasons_once = True
    scores_draws = False  # the vote's labels are scored once, on the sample's prompt (unless each draw reasons)

    @classmethod
    def from_config(cls, config, scheme: LabelScheme) -> Single:
        return cls()

    def can_stream(self, mode: str) -> bool:
        return mode in ("generate", "score")  # one answer, or one chain of label scorings, per sample

    def can_draw(self, mode: str) -> bool:
        return mode == "generate"  # score mode has one deterministic answer per sample

    def flow(self, backend, prepared: Prepared, run: RunContext) -> Flow:
        """One sample's requests, as `answer` makes them for a batch: its reasoning (when the run reasons
        first), then its answer generated and its labels scored after it, or its labels scored."""
        prompt = yield from thought_flow(prepared.prompt)
        if isinstance(prompt, Exception):
            return refused(prepared.prompt, prompt, "its reasoning")
        if run.setup.mode == "score":
            tasks = yield from score_flow(prompt)
            prediction = refused(prompt, tasks) if isinstance(tasks, Exception) else \
                Prediction(sample_id=prompt.sample_id, tasks=tasks)
        else:
            prediction = read_answer(prompt, (yield Ask(prompt)), answer_limit(backend))
            if run.probabilities:
                prediction = yield from probabilities_flow(prompt, prediction)
        return keep_thought(prediction, prompt)

    def draw_flow(self, backend, prepared: Prepared, run: RunContext, k: int, temperature: float) -> Flow:
        """Draw `k` of a sample, as `draw` makes it: sampled (seeded `k`), or, where the run reasons, a sampled
        reasoning, then the greedy answer after it with its own label scores."""
        prompt = prepared.prompt
        if run.setup.reasoning is None:
            return read_answer(prompt, (yield Ask(prompt, temperature, k)), answer_limit(backend))
        reasoned = yield from thought_flow(prompt, temperature, k)
        if isinstance(reasoned, Exception):
            return refused(prompt, reasoned, "its reasoning")
        prediction = read_answer(reasoned, (yield Ask(reasoned)), answer_limit(backend))
        if run.probabilities:
            prediction = yield from probabilities_flow(reasoned, prediction)
        return keep_thought(prediction, reasoned)

    def answer(self, backend, ready: Sequence[Prepared], run: RunContext) -> list[Prediction]:
        return answer_reasoned(
            backend, [p.prompt for p in ready],
            lambda prompts: run_prompts(backend, prompts, run.setup.mode, run.adapter, run.probabilities,
                                        run.on_stage), run.adapter, on_stage=run.on_stage)

    def draw(self, backend, ready: Sequence[Prepared], run: RunContext, n: int, temperature: float
             ) -> list[list[Prediction]]:
        """`n` sampled answers per prompt, all in one backend call (draw k is seeded k). A run that reasons
        draws `n` reasonings instead, answers greedily after each and scores its labels there."""
        requests = [(p.prompt, draw) for p in ready for draw in range(n)]
        run.on_stage(f"drawing {len(requests)} answers")
        prompts, seeds = [p for p, _ in requests], [draw for _, draw in requests]
        if run.setup.reasoning is None:
            answers = generate_predictions(backend, prompts, run.adapter, temperature, seeds=seeds)
        else:
            answers = answer_reasoned(backend, prompts, lambda reasoned: self._after_reasoning(backend, reasoned, run),
                                      run.adapter, temperature, seeds, run.on_stage)
        return [answers[i * n:(i + 1) * n] for i in range(len(ready))]

    @staticmethod
    def _after_reasoning(backend, prompts, run: RunContext) -> list[Prediction]:
        answers = generate_predictions(backend, prompts, run.adapter)
        if run.probabilities:  # each path's own distribution, which the vote averages
            add_probabilities(backend, prompts, answers, run.adapter, run.on_stage)
        return answers
