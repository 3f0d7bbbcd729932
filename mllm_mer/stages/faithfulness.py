"""Re-scoring with one modality taken away (`evaluate --faithfulness`): for each answered sample, its label
distribution on the run's own prompt and on the same prompt without each modality it brings, built by the
same modality switch the fusion experts and `ablate` use (`build_prompt(..., modalities)`), media decoded once.

The distributions live in the record as `extras.faithfulness` = {"present": [...], "scored": {"all": {task:
probabilities}, "-video": {...}, ...}}; `evaluation.faithfulness` reads them against what the rationale cites.
"""
from __future__ import annotations

from collections.abc import Sequence

from mllm_mer.backends.base import Backend
from mllm_mer.core.types import Prediction, Prompt, PromptSetup
from mllm_mer.prompting import build_prompt
from mllm_mer.stages.prepare import Prepared, Stage, present_modalities, quiet
from mllm_mer.stages.scoring import score_labels

FULL = "all"  # the prompt with every modality the sample brings


def removal_prompts(prepared: Prepared, setup: PromptSetup) -> dict[str, Prompt]:
    """The label-first prompt with every modality, then without each present one ('-video', ...); a sample
    that brings one modality only has nothing to take away."""
    present = present_modalities(prepared.sample, prepared.media, setup.modalities)
    if len(present) < 2:
        return {}
    kept = {FULL: tuple(setup.modalities), **{f"-{m}": tuple(x for x in setup.modalities if x != m)
                                               for m in present}}
    return {name: build_prompt(prepared.sample, setup.scheme, setup.template, prepared.media, modalities,
                               demonstrations=prepared.demonstrations, reasoning=None)
            for name, modalities in kept.items()}


def add_removals(backend: Backend, ready: Sequence[Prepared], predictions: Sequence[Prediction],
                 setup: PromptSetup, adapter: str | None = None, on_stage: Stage = quiet) -> None:
    """Each answered prediction gains `extras.faithfulness` (in place); a sample the backend refuses to score
    keeps its answer, with a note."""
    jobs = [(i, name, prompt) for i, p in enumerate(predictions) if p.ok
            for name, prompt in removal_prompts(ready[i], setup).items()]
    if not jobs:
        return
    on_stage(f"faithfulness: scoring {len(jobs)} prompts with a modality removed")
    found: dict[int, dict] = {}
    for (i, name, _), scored in zip(jobs, score_labels(backend, [p for _, _, p in jobs], adapter), strict=True):
        if isinstance(scored, Exception):
            predictions[i].notes.append(f"faithfulness: the prompt {name} could not be scored: {scored}")
            continue
        found.setdefault(i, {})[name] = {task: tp.probabilities for task, tp in scored.items()}
    for i, scored in found.items():
        if FULL in scored:
            present = [name[1:] for name in scored if name != FULL]
            predictions[i].extras["faithfulness"] = {"present": present, "scored": scored}
