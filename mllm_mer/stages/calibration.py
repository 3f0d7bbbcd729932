"""Calibrated label probabilities: temperature scaling per task, and the metrics that judge it.

`fit(records, scheme)` finds, per task, the temperature T that minimises the negative
log-likelihood of the gold labels under softmax(log p / T) on a dev run (Guo et al., 2017);
`calibrate` rescales a prediction's probabilities with it (the arg-max never moves).
ECE (15 equal-width bins) comes from torchmetrics; Brier score and NLL are written out here
because they are one line each over the same arrays.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mllm_mer.core.types import LabelScheme, Prediction

N_BINS = 15
EPS = 1e-12
BOUNDS = (0.05, 20.0)  # the temperatures searched first
WIDE_BOUNDS = (0.01, 100.0)  # searched when the first fit lands on a bound
MIN_ROWS = 50  # fewer dev rows than this: the temperature is a rough estimate, and the fit says so


@dataclass(frozen=True)
class Calibration:
    """Per task: the label order it was fitted with and its temperature."""

    scheme: str
    temperatures: dict[str, float]
    labels: dict[str, tuple[str, ...]]
    fitted_on: str = ""
    warnings: dict[str, str] = field(default_factory=dict)  # task -> why its temperature deserves doubt

    def check(self, scheme: LabelScheme, source: str = "calibration") -> None:
        """A calibration applies only to the label sets it was fitted on."""
        for task, labels in self.labels.items():
            try:
                own = scheme.task(task).labels
            except KeyError:
                raise ValueError(f"{source}: fitted for task {task!r}, which label set {scheme.name!r} does not "
                                 f"have (tasks: {', '.join(scheme.tasks)})") from None
            if tuple(own) != tuple(labels):
                raise ValueError(f"{source}: fitted on labels {list(labels)} for {task!r}, but this run's label "
                                 f"set {scheme.name!r} has {list(own)}")

    def to_json(self) -> str:
        return json.dumps({"scheme": self.scheme, "fitted_on": self.fitted_on,
                           "tasks": {t: {"temperature": self.temperatures[t], "labels": list(self.labels[t]),
                                         **({"warning": self.warnings[t]} if t in self.warnings else {})}
                                     for t in self.temperatures}}, indent=2) + "\n"


def rescale_rows(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T) per row."""
    logits = np.log(np.clip(probs, EPS, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    weights = np.exp(logits)
    return weights / weights.sum(axis=1, keepdims=True)


def rescale(probabilities: dict[str, float], temperature: float) -> dict[str, float]:
    row = rescale_rows(np.asarray([list(probabilities.values())], dtype=float), temperature)[0]
    return {k: float(v) for k, v in zip(probabilities, row, strict=True)}


def calibrate(prediction: Prediction, temperatures: dict[str, float]) -> Prediction:
    """Temperature-scale each task's probabilities in place (fitted by `mllm-mer calibrate`); labels stay."""
    for task, tp in prediction.tasks.items():
        temperature = temperatures.get(task, 1.0)
        if tp.probabilities and temperature != 1.0:
            tp.probabilities = rescale(tp.probabilities, temperature)
    return prediction


def load(path: str | Path) -> Calibration:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        tasks = data["tasks"]
        return Calibration(scheme=str(data.get("scheme", "")), fitted_on=str(data.get("fitted_on", "")),
                           temperatures={t: float(v["temperature"]) for t, v in tasks.items()},
                           labels={t: tuple(v["labels"]) for t, v in tasks.items()},
                           warnings={t: str(v["warning"]) for t, v in tasks.items() if v.get("warning")})
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such calibration file") from None
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise ValueError(f"{path}: not a calibration file (write one with `mllm-mer calibrate RUN --out FILE`)") \
            from None


def arrays(records: list[dict[str, Any]], task: str, labels: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities N x K, gold index N) over the records that have both, in `labels` order."""
    probs, gold = [], []
    for record in records:
        prediction = record["prediction"]
        tp = (prediction.get("tasks") or {}).get(task) or {}
        distribution = tp.get("probabilities")
        answer = record.get("gold", {}).get(task)
        if not prediction.get("ok") or not distribution or answer is None:
            continue
        matches = [i for i, label in enumerate(labels) if label.lower() == str(answer).strip().lower()]
        if not matches:
            continue
        probs.append([distribution.get(label, 0.0) for label in labels])
        gold.append(matches[0])
    return np.asarray(probs, dtype=float).reshape(-1, len(labels)), np.asarray(gold, dtype=int)


def calibration_metrics(probs: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    """ECE (15 bins, top-label), multiclass Brier score and NLL."""
    if len(gold) == 0:
        return {}
    # Imported only when there is something to score: torchmetrics takes seconds to import.
    import torch
    from torchmetrics.functional.classification import multiclass_calibration_error

    onehot = np.eye(probs.shape[1])[gold]
    ece = multiclass_calibration_error(torch.tensor(probs, dtype=torch.float64), torch.tensor(gold),
                                       num_classes=probs.shape[1], n_bins=N_BINS, norm="l1")
    return {"ece": float(ece), "brier": float(np.mean(np.sum((probs - onehot) ** 2, axis=1))),
            "nll": float(-np.mean(np.log(np.clip(probs[np.arange(len(gold)), gold], EPS, 1.0)))),
            "n_scored": int(len(gold))}


def fit_temperature(probs: np.ndarray, gold: np.ndarray, bounds: tuple[float, float] = BOUNDS) -> float:
    """The T in `bounds` minimising NLL of softmax(log p / T); 1.0 when there is nothing to fit on."""
    from scipy.optimize import minimize_scalar

    if len(gold) < 2:
        return 1.0
    logits = np.log(np.clip(probs, EPS, 1.0))

    def nll(log_t: float) -> float:
        scaled = logits / math.exp(log_t)
        scaled -= scaled.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(scaled).sum(axis=1))
        return float(-np.mean(scaled[np.arange(len(gold)), gold] - log_norm))

    result = minimize_scalar(nll, bounds=(math.log(bounds[0]), math.log(bounds[1])), method="bounded")
    return float(math.exp(result.x))


def _at_bound(temperature: float, bounds: tuple[float, float]) -> bool:
    return abs(math.log(temperature) - math.log(bounds[0])) < 0.01 or \
        abs(math.log(temperature) - math.log(bounds[1])) < 0.01


def fit_task(probs: np.ndarray, gold: np.ndarray) -> tuple[float, str | None]:
    """(temperature, warning): a fit on a bound is searched again over wider bounds, and a fit still on
    one, or on few rows, comes with the reason to doubt it."""
    temperature = fit_temperature(probs, gold)
    if _at_bound(temperature, BOUNDS):
        temperature = fit_temperature(probs, gold, WIDE_BOUNDS)
    problems = []
    if _at_bound(temperature, WIDE_BOUNDS):
        what = "flattens every answer toward uniform: the probabilities carry almost no information about " \
               "correctness" if temperature > 1 else "sharpens every answer toward certainty"
        problems.append(f"the fit hit the search bound T = {temperature:.3g} (searched {WIDE_BOUNDS[0]:g}-"
                        f"{WIDE_BOUNDS[1]:g}); it {what}")
    if len(gold) < MIN_ROWS:
        problems.append(f"fitted on {len(gold)} rows (fewer than {MIN_ROWS}): a rough estimate")
    worse = _worse_ece(probs, gold, temperature)
    if worse:  # NLL's optimum need not lower ECE (few rows, bins of one): a calibration that hurts is no calibration
        problems.append(f"the fitted T = {temperature:.3g} made ECE worse on the run it was fitted on ({worse}); "
                        "kept T = 1 (probabilities unchanged)")
        temperature = 1.0
    return temperature, "; ".join(problems) or None


def _worse_ece(probs: np.ndarray, gold: np.ndarray, temperature: float) -> str | None:
    """'before -> after' when rescaling by `temperature` raises ECE on these rows, else None."""
    before = calibration_metrics(probs, gold)["ece"]
    after = calibration_metrics(rescale_rows(probs, temperature), gold)["ece"]
    return f"{before:.3f} -> {after:.3f}" if after > before + 1e-9 else None


def fit(records: list[dict[str, Any]], scheme: LabelScheme, fitted_on: str = "") -> Calibration:
    temperatures, labels, warnings = {}, {}, {}
    for ls in scheme.label_sets:
        probs, gold = arrays(records, ls.task, ls.labels)
        if len(gold) < 2:
            continue
        temperatures[ls.task], warning = fit_task(probs, gold)
        labels[ls.task] = tuple(ls.labels)
        if warning:
            warnings[ls.task] = warning
    if not temperatures:
        raise ValueError(f"{fitted_on or 'the run'}: no answered sample with label probabilities and a gold label "
                         "to fit on (run evaluate with --mode score or --probabilities)")
    return Calibration(scheme=scheme.name, temperatures=temperatures, labels=labels, fitted_on=fitted_on,
                       warnings=warnings)


def describe_fit(records: list[dict[str, Any]], calibration: Calibration) -> list[str]:
    """One line per task: the temperature, and ECE/NLL on the fitting run before and after."""
    lines = []
    for task, temperature in calibration.temperatures.items():
        probs, gold = arrays(records, task, calibration.labels[task])
        before = calibration_metrics(probs, gold)
        after = calibration_metrics(rescale_rows(probs, temperature), gold)
        lines.append(f"{task}: temperature {temperature:.3f}; on this run ECE {before['ece']:.4f} -> "
                     f"{after['ece']:.4f}, NLL {before['nll']:.4f} -> {after['nll']:.4f} (n={before['n_scored']})"
                     + (f"\n  warning: {calibration.warnings[task]}" if task in calibration.warnings else ""))
    return lines


def plot_reliability(records: list[dict[str, Any]], scheme: LabelScheme, path: Path) -> bool:
    """A reliability diagram per task (confidence vs accuracy in 15 bins); False when nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(ls.task, *arrays(records, ls.task, ls.labels)) for ls in scheme.label_sets]
    panels = [p for p in panels if len(p[2])]
    if not panels:
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4.2), squeeze=False)
    edges = np.linspace(0, 1, N_BINS + 1)
    for ax, (task, probs, gold) in zip(axes[0], panels, strict=True):
        confidence = probs.max(axis=1)
        correct = probs.argmax(axis=1) == gold
        which = np.clip(np.digitize(confidence, edges) - 1, 0, N_BINS - 1)
        centres, accuracy, counts = [], [], []
        for b in range(N_BINS):
            mask = which == b
            if mask.any():
                centres.append(confidence[mask].mean())
                accuracy.append(correct[mask].mean())
                counts.append(mask.sum())
        ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=1)
        # Bars on the bins' own edges (the mean confidence would let neighbours overlap), each with its count.
        lefts = [edges[min(int(c * N_BINS), N_BINS - 1)] for c in centres]
        bars = ax.bar(lefts, accuracy, width=1 / N_BINS, align="edge", alpha=0.7, edgecolor="black")
        ax.bar_label(bars, labels=[f"n={n}" for n in counts], fontsize=6, rotation=90, padding=2)
        ax.plot(centres, accuracy, "o", color="black", markersize=3)  # where each bin's confidence lies
        ece = calibration_metrics(probs, gold)["ece"]
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy", title=f"{task} (ECE {ece:.3f})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
