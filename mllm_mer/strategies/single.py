"""The single strategy: one prompt, one answer (generated and parsed, or scored)."""
from __future__ import annotations

from collections.abc import Sequence

from mllm_mer.core.types import LabelScheme, Prediction
from mllm_mer.stages.prepare import Prepared
from mllm_mer.stages.scoring import generate_predictions, run_prompts
from mllm_mer.strategies.base import BaseStrategy, RunContext


class Single(BaseStrategy):
    name = "single"
    scores_draws = False  # the vote's labels are scored once, on the sample's prompt

    @classmethod
    def from_config(cls, config, scheme: LabelScheme) -> Single:
        return cls()

    def can_stream(self, mode: str) -> bool:
        return mode == "generate"

    def can_draw(self, mode: str) -> bool:
        return mode == "generate"  # score mode has one deterministic answer per sample

    def answer(self, backend, ready: Sequence[Prepared], run: RunContext) -> list[Prediction]:
        return run_prompts(backend, [p.prompt for p in ready], run.setup.mode, run.adapter, run.probabilities,
                           run.on_stage)

    def draw(self, backend, ready: Sequence[Prepared], run: RunContext, n: int, temperature: float
             ) -> list[list[Prediction]]:
        """`n` sampled answers per prompt, all in one backend call (draw k is seeded k)."""
        requests = [(p.prompt, draw) for p in ready for draw in range(n)]
        run.on_stage(f"drawing {len(requests)} answers")
        answers = generate_predictions(backend, [p for p, _ in requests], run.adapter, temperature,
                                       seeds=[draw for _, draw in requests])
        return [answers[i * n:(i + 1) * n] for i in range(len(ready))]
