"""What `ablate` reports of a fusion run: every expert subset and fuser scored on the same samples, and what
removing each modality from the joint prompt costs (ablation.md, ablation.png)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mllm_mer.core.registry import FUSERS
from mllm_mer.core.types import LabelScheme
from mllm_mer.stages.calibration import calibration_metrics
from mllm_mer.stages.metrics import classification_metrics
from mllm_mer.strategies.fusion.experts import FUSED, MODALITY_ORDER, expert_name, expert_order, experts_of, subset_of
from mllm_mer.strategies.fusion.fusers import fuse
from mllm_mer.strategies.fusion.gate import Gate


def _expert_scores(records: list[dict[str, Any]], labels: tuple[str, ...], task: str,
                   distribution) -> dict[str, Any]:
    """Accuracy, weighted/macro F1 (a sample without this distribution counts as wrong) and ECE of the
    distributions `distribution(record)` gives (None: absent)."""

    gold, predicted, probs, gold_index = [], [], [], []
    for record in records:
        answer = str(record.get("gold", {}).get(task, "")).strip().lower()
        matches = [label for label in labels if label.lower() == answer]
        if not matches:
            continue
        given = distribution(record)
        gold.append(matches[0])
        predicted.append(max(given, key=given.get) if given else None)
        if given:
            probs.append([given.get(label, 0.0) for label in labels])
            gold_index.append(labels.index(matches[0]))
    if not gold:
        return {}
    scores = classification_metrics(gold, predicted, labels)
    scores.update(calibration_metrics(np.asarray(probs).reshape(-1, len(labels)), np.asarray(gold_index)))
    scores["present"] = len(probs)
    return scores


def ablation_scores(records: list[dict[str, Any]], scheme, gate=None) -> list[tuple[str, dict[str, Any]]]:
    """(row name, scores of the first task) for each expert subset, then each fuser."""
    ls = scheme.label_sets[0]
    names = sorted({n for r in records for n in experts_of(r)}, key=expert_order)
    rows = []
    for name in names:
        rows.append((f"expert: {name}", _expert_scores(
            records, ls.labels, ls.task, lambda r, n=name: (experts_of(r).get(n) or {})
            .get(ls.task))))
    for fuser in FUSERS:
        if fuser == "gate" and gate is None:
            continue
        task_gate = gate.tasks.get(ls.task) if gate else None

        def fused(record, fuser=fuser, task_gate=task_gate):
            experts = {n: e[ls.task] for n, e in experts_of(record).items()
                       if n in FUSED and ls.task in e}
            return fuse(experts, fuser, ls.labels, task_gate) if experts else None

        rows.append((f"fuser: {fuser}", _expert_scores(records, ls.labels, ls.task, fused)))
    return rows


def fusion_rows(records: list[dict[str, Any]], scheme, gate=None) -> list[str]:
    """A Markdown table of the experts and fusers of a fusion run (first task)."""
    task = scheme.label_sets[0].task
    lines = [f"| {task}: expert / fuser | accuracy | weighted F1 | macro F1 | ECE | samples with it |",
             "|---|---|---|---|---|---|"]
    for name, m in ablation_scores(records, scheme, gate):
        if m:
            lines.append(f"| {name} | {m['accuracy']:.4f} | {m['weighted_f1']:.4f} | {m['macro_f1']:.4f} | "
                         f"{m.get('ece', float('nan')):.4f} | {m['present']} |")
    return lines


def robustness_rows(records: list[dict[str, Any]], scheme) -> list[str]:
    """The joint prompt with each modality removed at test time, and the accuracy it costs."""
    ls = scheme.label_sets[0]
    full = [r for r in records if "joint" in experts_of(r)]
    every = sorted({m for r in full for n in experts_of(r) for m in subset_of(n) or ()},
                   key=MODALITY_ORDER.index)
    if len(every) < 2:
        return []

    def accuracy(name):
        return _expert_scores(full, ls.labels, ls.task, lambda r: (experts_of(r).get(name) or {})
                              .get(ls.task)).get("accuracy", 0.0)

    base = accuracy("joint")
    lines = ["| removed at test time | accuracy | drop |", "|---|---|---|", f"| (none: joint) | {base:.4f} | - |"]
    for m in every:
        rest = expert_name([x for x in every if x != m])
        got = accuracy(rest)
        lines.append(f"| {m} | {got:.4f} | {base - got:+.4f} |")
    return lines


def write_ablation(run_dir: Path, info: dict[str, Any], scheme: LabelScheme, records: list[dict[str, Any]],
                   gate: Gate | None = None) -> str:
    """ablation.md (experts x fusers table, missing-modality robustness) and ablation.png in `run_dir`, from a
    finished fusion run's info (metrics.json "run"), label scheme and records; returns the tables."""
    table = fusion_rows(records, scheme, gate)
    robust = robustness_rows(records, scheme)
    lines = [f"# Ablation: {info.get('dataset')} / {info.get('split')}", "",
             f"model `{info.get('model')}`, template `{info.get('template')}`; every modality subset scored from "
             "the same decoded media; fusers combine the single-modality experts and the joint prompt.", ""] + table
    if robust:
        lines += ["", "## Missing modalities", "", *robust]
    lines += ["", "![ablation](ablation.png)"]
    (run_dir / "ablation.md").write_text("\n".join(lines) + "\n")
    _plot([(name, m) for name, m in ablation_scores(records, scheme, gate) if m], scheme.label_sets[0].task,
          run_dir / "ablation.png")
    return "\n".join(table + ([""] + robust if robust else []))


def _plot(rows: list[tuple[str, dict[str, Any]]], task: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.2))
    y = range(len(rows))
    ax.barh([i + 0.2 for i in y], [m["accuracy"] for _, m in rows], height=0.4, label="accuracy")
    ax.barh([i - 0.2 for i in y], [m["macro_f1"] for _, m in rows], height=0.4, label="macro F1")
    ax.set_yticks(list(y), [name for name, _ in rows])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.legend(loc="lower right")
    ax.set_title(f"{task}: experts and fusers")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
