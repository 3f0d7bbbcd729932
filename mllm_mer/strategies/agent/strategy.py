"""The agent strategy: gather evidence with tools, then answer (its options are its own)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mllm_mer.core.types import LabelScheme, Prediction, PromptSetup
from mllm_mer.stages.prepare import Prepared
from mllm_mer.stages.requests import Flow
from mllm_mer.stages.resources import Resources
from mllm_mer.strategies.agent.loop import episode_flow, run_episodes, start
from mllm_mer.strategies.agent.report import trace_section, trace_statistics
from mllm_mer.strategies.agent.tools import TOOL_NAMES, Toolbox
from mllm_mer.strategies.base import BaseStrategy, RunContext


@dataclass
class Agent(BaseStrategy):
    name = "agent"
    reasons = True  # a short bounded thought before each action (--reasoning before|native)
    scores_draws = True  # each episode's answer is scored where it was written; the vote averages them

    max_steps: int = 3
    tools: tuple[str, ...] = TOOL_NAMES
    look_frames: int = 4

    def __post_init__(self) -> None:
        if self.max_steps < 1:
            raise ValueError(f"--max-steps must be at least 1 (got {self.max_steps})")
        unknown = sorted(set(self.tools) - set(TOOL_NAMES))
        if unknown:
            raise ValueError(f"unknown tools {unknown}; choose from {', '.join(TOOL_NAMES)}")
        self.tools = tuple(self.tools)

    @classmethod
    def from_config(cls, config, scheme: LabelScheme | None = None) -> Agent:
        return cls(config.max_steps, tuple(config.tools), config.look_frames)

    def needs(self) -> frozenset[str]:
        return frozenset({"index"} if "recall" in self.tools else set()) | (
            {"history"} if "context" in self.tools else set())

    def fingerprint(self) -> dict[str, Any]:
        return {"strategy": self.name, "max_steps": self.max_steps, "tools": list(self.tools),
                "look_frames": self.look_frames}

    @classmethod
    def statistics(cls, records) -> dict[str, Any] | None:
        return trace_statistics(records)

    @classmethod
    def report_section(cls, stats: dict[str, Any]) -> list[str]:
        return trace_section(stats)

    def can_draw(self, mode: str) -> bool:
        return True  # actions are sampled even when the answer is scored

    def toolbox(self, setup: PromptSetup, resources: Resources | None = None, backend=None) -> Toolbox:
        """The tools over a run; looks stop where the backend's image limit per prompt would be passed (no
        backend: training replays scripted traces, with no limit)."""
        return Toolbox(setup, resources or Resources(), self.tools, self.max_steps, self.look_frames,
                       image_limit=backend.max_images if backend is not None else None,
                       audio_limit=backend.max_audios if backend is not None else None)

    def can_stream(self, mode: str) -> bool:
        return True  # each episode is a flow: its next step goes out when its last one is read

    def flow(self, backend, prepared: Prepared, run: RunContext) -> Flow:
        return self.draw_flow(backend, prepared, run, 0, 0.0)

    def draw_flow(self, backend, prepared: Prepared, run: RunContext, k: int, temperature: float) -> Flow:
        """Episode `k` of a sample (its steps seeded from `k`), as `draw` runs it."""
        box = self.toolbox(run.setup, run.resources, backend)
        ep = start(prepared.prompt, prepared.sample, prepared.media, box, k)
        return episode_flow(backend, ep, box, run.probabilities or run.setup.mode == "score", temperature)

    def answer(self, backend, ready: Sequence[Prepared], run: RunContext) -> list[Prediction]:
        return [draws[0] for draws in self.draw(backend, ready, run, 1, 0.0)]

    def draw(self, backend, ready: Sequence[Prepared], run: RunContext, n: int, temperature: float
             ) -> list[list[Prediction]]:
        """`n` episodes per sample, all in one lockstep (episode k's steps seeded from k)."""
        box = self.toolbox(run.setup, run.resources, backend)
        episodes = [start(p.prompt, p.sample, p.media, box, draw) for p in ready for draw in range(n)]
        run_episodes(backend, episodes, box, run.adapter, run.probabilities or run.setup.mode == "score",
                     temperature=temperature, on_stage=run.on_stage)
        return [[ep.prediction for ep in episodes[i * n:(i + 1) * n]] for i in range(len(ready))]
