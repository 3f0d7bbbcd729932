"""The fusion strategy: per sample, its experts scored (one batched call per task for all experts of all
samples, media decoded once), then fused; the experts' distributions and the missing ones are kept."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mllm_mer.core.types import LabelScheme, Prediction, Prompt, TaskPrediction
from mllm_mer.prompting import build_prompt
from mllm_mer.stages.prepare import Prepared, present_modalities
from mllm_mer.stages.scoring import score_labels
from mllm_mer.strategies.base import BaseStrategy, RunContext
from mllm_mer.strategies.fusion.experts import FUSED, JOINT, expert_subsets, hearing_experts
from mllm_mer.strategies.fusion.fusers import fuse
from mllm_mer.strategies.fusion.gate import Gate, load_gate


@dataclass
class Fusion(BaseStrategy):
    name = "fusion"
    fuser: str = "entropy"
    gate: Gate | None = None
    every_subset: bool = False  # score every non-empty modality subset (an ablation), not only singles
    gate_file: str | None = None

    @classmethod
    def from_config(cls, config, scheme: LabelScheme) -> Fusion:
        gate = None
        if config.fusion:
            gate = load_gate(config.fusion)
            gate.check(scheme, config.fusion)
        elif config.fuser == "gate":
            raise ValueError("--fuser gate needs --fusion fusion.json (from `mllm-mer fit-fusion DEV_RUN`)")
        return cls(config.fuser, gate, config.experts == "all", config.fusion)

    def fingerprint(self) -> dict[str, Any]:
        return {"strategy": self.name, "fuser": self.fuser, "every_subset": self.every_subset,
                "gate": str(Path(self.gate_file).resolve()) if self.gate_file else None}

    def can_stream(self, mode: str) -> bool:
        return True  # its requests are label scorings, which a stream sends one by one

    def scores_only(self, mode: str) -> bool:
        return True

    def scorings(self, prepared: Prepared, run: RunContext) -> list[tuple[str, Prompt]]:
        """The sample's experts, by name: the joint prompt and one per modality it brings (or every subset)."""
        setup, p = run.setup, prepared
        present = present_modalities(p.sample, p.media, setup.modalities)
        jobs = [(name, p.prompt if name == JOINT else build_prompt(p.sample, setup.scheme, setup.template, p.media,
                                                                    modalities))
                for name, modalities in expert_subsets(present, every_subset=self.every_subset).items()]
        if self.every_subset and "audio" in present:
            jobs += [(name, build_prompt(sample, setup.scheme, setup.template, media, ("audio",)))
                     for name, (sample, media) in hearing_experts(p.sample, p.media).items()]
        return jobs

    def from_scorings(self, prepared: Prepared, scored: dict[str, Any], run: RunContext) -> Prediction:
        setup, p = run.setup, prepared
        experts = {name: {t: tp.probabilities for t, tp in tasks.items()}
                   for name, tasks in scored.items() if not isinstance(tasks, Exception)}
        if not experts:
            error = next(iter(scored.values()), None)
            return Prediction.failure(p.sample.id, f"the backend refused every expert: {error}", kind="backend")
        present = present_modalities(p.sample, p.media, setup.modalities)
        # Signals are rare: a sample that names no signal file is not short of them.
        missing = [m for m in setup.modalities if m not in present and (m != "physio" or p.sample.physio)]
        return self.fused(p.sample.id, experts, setup.scheme, missing)

    def answer(self, backend, ready: Sequence[Prepared], run: RunContext) -> list[Prediction]:
        """Every expert of every sample scored in one batched call per task (media decoded once), then fused."""
        jobs = [(i, name, prompt) for i, p in enumerate(ready) for name, prompt in self.scorings(p, run)]
        run.on_stage(f"scoring {len(jobs)} expert prompts")
        scored = score_labels(backend, [prompt for _, _, prompt in jobs], run.adapter)
        per_sample: list[dict[str, Any]] = [{} for _ in ready]
        for (i, name, _), tasks in zip(jobs, scored, strict=True):
            per_sample[i][name] = tasks
        return [self.from_scorings(p, per_sample[i], run) for i, p in enumerate(ready)]

    def fused(self, sample_id: str, experts: dict[str, dict[str, dict[str, float]]], scheme: LabelScheme,
              missing: Sequence[str] = ()) -> Prediction:
        tasks = {}
        for ls in scheme.label_sets:
            given = {name: e[ls.task] for name, e in experts.items() if ls.task in e and name in FUSED}
            gate = self.gate.tasks.get(ls.task) if self.gate else None
            probabilities = fuse(given, self.fuser, ls.labels, gate)
            tasks[ls.task] = TaskPrediction(label=max(probabilities, key=probabilities.get),
                                            probabilities=probabilities)
        notes = [f"missing experts: {', '.join(missing)} (no such modality in this sample)"] if missing else []
        return Prediction(sample_id=sample_id, tasks=tasks, notes=notes, extras={"fusion": {"experts": experts}})
