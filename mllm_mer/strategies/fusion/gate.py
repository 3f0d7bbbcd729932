"""The learned fusion gate: a multinomial logistic regression over the experts' log-probabilities and
presence flags, fitted on a dev run with modality dropout (`mllm-mer fit-fusion`; in the spirit of
MAG-Net's gate)."""
from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mllm_mer.core.types import LabelScheme
from mllm_mer.strategies.fusion.experts import GATE_EXPERTS, JOINT, MODALITY_ORDER, experts_of
from mllm_mer.strategies.fusion.fusers import FLOOR


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
            experts = {name: tasks_[ls.task] for name, tasks_ in experts_of(record).items()
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


