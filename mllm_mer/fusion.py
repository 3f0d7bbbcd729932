"""Modality fusion over per-modality experts: late fusion of label distributions.

An expert is one scored prompt over a subset of the sample's modalities (text only, frames only,
vocal cues only, and the joint prompt), built from the same decoded media; each gives a label
distribution per task. A fuser turns the experts present for a sample into one distribution:

- `mean`: the average distribution;
- `product`: the normalised product (product of experts);
- `entropy`: a weighted average where each expert's weight is its certainty (log K minus its
  entropy), per sample, so confident modalities weigh more (adaptive, no training; in the spirit of
  TACFN's adaptive cross-modal fusion);
- `gate`: a multinomial logistic regression over the experts' log-probabilities and presence flags,
  fitted on a dev run with modality dropout (`mllm-mer fit-fusion`; in the spirit of MAG-Net's gate).

A missing expert (its modality absent) is left out by every fuser; the gate sees it as absent.
"""
from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from mllm_mer.types import LabelScheme, Prediction, Prompt, PromptSetup, TaskPrediction

FUSERS = ("mean", "product", "entropy", "gate")
MODALITY_ORDER = ("text", "video", "audio")
JOINT = "joint"
GATE_EXPERTS = (*MODALITY_ORDER, JOINT)  # the gate's input slots
FUSED = frozenset(GATE_EXPERTS)  # what fusers combine (an ablation's other subsets are reported, not fused)
FLOOR = 1e-9


def expert_name(modalities: Sequence[str]) -> str:
    return "+".join(m for m in MODALITY_ORDER if m in modalities)


def expert_subsets(present: Sequence[str], every_subset: bool = False) -> dict[str, tuple[str, ...]]:
    """The experts of a sample: each present modality alone and the joint prompt (or, for an ablation,
    every non-empty subset of the present modalities); name -> modalities."""
    present = tuple(m for m in MODALITY_ORDER if m in present)
    sizes = range(1, len(present)) if every_subset else (1,)  # all of them together is the joint prompt
    experts = {expert_name(c): c for size in sizes for c in combinations(present, size) if len(present) > 1}
    experts[JOINT] = present
    return experts


# -- fusers -------------------------------------------------------------------------------------

def _normalised(weights: dict[str, float]) -> dict[str, float]:
    total = sum(weights.values())
    return {k: v / total for k, v in weights.items()}


def fuse(experts: dict[str, dict[str, float]], fuser: str, labels: Sequence[str], gate: TaskGate | None = None
         ) -> dict[str, float]:
    """One distribution over `labels` from the experts present ({expert: {label: p}})."""
    if not experts:
        raise ValueError("no expert to fuse")
    if fuser == "mean":
        return _normalised({label: sum(e.get(label, 0.0) for e in experts.values()) for label in labels})
    if fuser == "product":
        logs = {label: sum(math.log(max(e.get(label, 0.0), FLOOR)) for e in experts.values()) for label in labels}
        top = max(logs.values())
        return _normalised({label: math.exp(v - top) for label, v in logs.items()})
    if fuser == "entropy":
        most = math.log(len(labels))
        certainty = {name: most + sum(p * math.log(max(p, FLOOR)) for p in e.values()) + 1e-6
                     for name, e in experts.items()}
        weights = _normalised(certainty)
        return _normalised({label: sum(weights[n] * e.get(label, 0.0) for n, e in experts.items())
                            for label in labels})
    if fuser == "gate":
        if gate is None:
            raise ValueError("the gate fuser needs a fitted gate: --fusion fusion.json (from `mllm-mer fit-fusion`)")
        return gate.predict(experts)
    raise ValueError(f"unknown fuser {fuser!r}; choose from {', '.join(FUSERS)}")


@dataclass
class TaskGate:
    """A fitted gate for one task: softmax(W x + b) over the experts' log-probabilities and presence flags."""

    labels: tuple[str, ...]
    experts: tuple[str, ...]
    coef: np.ndarray  # (K, F)
    intercept: np.ndarray  # (K,)

    def features(self, experts: dict[str, dict[str, float]]) -> np.ndarray:
        uniform = math.log(1.0 / len(self.labels))
        row = []
        for name in self.experts:
            given = experts.get(name)
            row += [math.log(max(given.get(label, 0.0), FLOOR)) if given else uniform for label in self.labels]
            row.append(1.0 if given else 0.0)
        return np.asarray(row)

    def predict(self, experts: dict[str, dict[str, float]]) -> dict[str, float]:
        logits = self.coef @ self.features(experts) + self.intercept
        logits -= logits.max()
        weights = np.exp(logits)
        return dict(zip(self.labels, (weights / weights.sum()).tolist(), strict=True))


@dataclass
class Gate:
    scheme: str
    tasks: dict[str, TaskGate]
    fitted_on: str = ""

    def check(self, scheme: LabelScheme, source: str) -> None:
        for ls in scheme.label_sets:
            gate = self.tasks.get(ls.task)
            if gate is None or tuple(gate.labels) != tuple(ls.labels):
                raise ValueError(f"{source}: this fusion gate was fitted for label set {self.scheme!r} "
                                 f"({', '.join(self.tasks)}); the run uses {scheme.name!r}")

    def save(self, path: str | Path) -> Path:
        data = {"scheme": self.scheme, "fitted_on": self.fitted_on,
                "tasks": {t: {"labels": list(g.labels), "experts": list(g.experts), "coef": g.coef.tolist(),
                              "intercept": g.intercept.tolist()} for t, g in self.tasks.items()}}
        path = Path(path)
        path.write_text(json.dumps(data, indent=2) + "\n")
        return path


def load_gate(path: str | Path) -> Gate:
    try:
        data = json.loads(Path(path).read_text())
        tasks = {t: TaskGate(tuple(g["labels"]), tuple(g["experts"]), np.asarray(g["coef"], dtype=float),
                             np.asarray(g["intercept"], dtype=float)) for t, g in data["tasks"].items()}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: not a fusion file from `mllm-mer fit-fusion` ({error})") from None
    return Gate(data.get("scheme", ""), tasks, data.get("fitted_on", ""))


def fit_gate(records: list[dict[str, Any]], scheme: LabelScheme, fitted_on: str = "", dropout_copies: int = 3,
             seed: int = 0) -> Gate:
    """A gate per task from a fusion run's records (experts + gold), with modality dropout: each row is
    also seen with random single-modality experts removed, so that a missing modality at test time is
    a case the gate has met."""
    from sklearn.linear_model import LogisticRegression

    rng = random.Random(seed)
    tasks = {}
    for ls in scheme.label_sets:
        shell = TaskGate(ls.labels, GATE_EXPERTS, np.zeros((len(ls.labels), 1)), np.zeros(len(ls.labels)))
        rows, targets = [], []
        for record in records:
            experts = {name: tasks_[ls.task] for name, tasks_ in (record["prediction"].get("experts") or {}).items()
                       if ls.task in tasks_}
            gold = ls.normalise(str(record.get("gold", {}).get(ls.task, "")))
            if not experts or gold is None:
                continue
            variants = [experts]
            singles = [n for n in experts if n in MODALITY_ORDER]
            for _ in range(dropout_copies):
                dropped = {n for n in singles if rng.random() < 0.5}
                kept = {n: e for n, e in experts.items() if n not in dropped}
                if JOINT in kept and dropped:  # the joint prompt had the dropped modality: drop it too
                    kept.pop(JOINT)
                if kept:
                    variants.append(kept)
            for variant in variants:
                rows.append(shell.features(variant))
                targets.append(ls.labels.index(gold))
        if len(set(targets)) < 2:
            raise ValueError(f"task {ls.task!r}: the run has too few scored samples with gold labels to fit a gate "
                             "(run evaluate with --strategy fusion on a labelled dev split)")
        model = LogisticRegression(max_iter=2000, C=1.0)
        model.fit(np.asarray(rows), np.asarray(targets))
        coef = np.zeros((len(ls.labels), len(rows[0])))
        intercept = np.full(len(ls.labels), -1e3)  # a class never seen in the dev run is never predicted
        classes = list(model.classes_)
        if len(classes) == 2:  # binary: sklearn keeps one row; as a softmax, the other class is its negative
            coef[classes[1]], intercept[classes[1]] = model.coef_[0] / 2, model.intercept_[0] / 2
            coef[classes[0]], intercept[classes[0]] = -model.coef_[0] / 2, -model.intercept_[0] / 2
        else:
            for row, cls in enumerate(classes):
                coef[cls], intercept[cls] = model.coef_[row], model.intercept_[row]
        tasks[ls.task] = TaskGate(ls.labels, GATE_EXPERTS, coef, intercept)
    return Gate(scheme.name, tasks, fitted_on)


# -- the strategy ------------------------------------------------------------------------------

def run_fusion(backend, ready: Sequence[Any], setup: PromptSetup, adapter: str | None = None,
               on_stage=lambda stage: None) -> list[Prediction]:
    """Per sample: its experts scored (one batched call per task for all experts of all samples, media
    decoded once), fused by `setup.fuser`; the experts' distributions and the missing ones are kept."""
    from mllm_mer.pipeline import present_modalities, score_labels
    from mllm_mer.prompting import build_prompt

    jobs: list[tuple[int, str, Prompt]] = []
    missing: list[list[str]] = []
    for i, p in enumerate(ready):
        present = present_modalities(p.sample, p.media, setup.modalities)
        experts = expert_subsets(present, every_subset=setup.every_subset)
        for name, modalities in experts.items():
            prompt = p.prompt if name == JOINT else build_prompt(p.sample, setup.scheme, setup.template, p.media,
                                                                 modalities)
            jobs.append((i, name, prompt))
        missing.append([m for m in setup.modalities if m not in present])
    on_stage(f"scoring {len(jobs)} expert prompts")
    scored = score_labels(backend, [prompt for _, _, prompt in jobs], adapter)
    per_sample: list[dict[str, dict[str, dict[str, float]]]] = [{} for _ in ready]
    errors: dict[int, Exception] = {}
    for (i, name, _), tasks in zip(jobs, scored, strict=True):
        if isinstance(tasks, Exception):
            errors.setdefault(i, tasks)
            continue
        per_sample[i][name] = {t: tp.probabilities for t, tp in tasks.items()}
    predictions = []
    for i, p in enumerate(ready):
        if not per_sample[i]:
            predictions.append(Prediction.failure(p.sample.id, f"the backend refused every expert: {errors.get(i)}",
                                                  kind="backend"))
            continue
        predictions.append(fused_prediction(p.sample.id, per_sample[i], setup, missing[i]))
    return predictions


def fused_prediction(sample_id: str, experts: dict[str, dict[str, dict[str, float]]], setup: PromptSetup,
                     missing: Sequence[str] = (), fuser: str | None = None) -> Prediction:
    tasks = {}
    fuser = fuser or setup.fuser
    for ls in setup.scheme.label_sets:
        given = {name: e[ls.task] for name, e in experts.items() if ls.task in e and name in FUSED}
        gate = setup.gate.tasks.get(ls.task) if setup.gate else None
        probabilities = fuse(given, fuser, ls.labels, gate)
        tasks[ls.task] = TaskPrediction(label=max(probabilities, key=probabilities.get), probabilities=probabilities)
    notes = [f"missing experts: {', '.join(missing)} (no such modality in this sample)"] if missing else []
    return Prediction(sample_id=sample_id, tasks=tasks, experts=experts, notes=notes)
