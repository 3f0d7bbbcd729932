"""Both answer orders on the same samples (`evaluate --compare-orders`): how often reasoning changed the
label, and whether it helped (accuracy and ECE of the label-first and the reasoned answer), from the
records' `reasoning.label_first` beside their reasoned answers."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mllm_mer.core.types import LabelScheme, LabelSet


def _gold(record: dict[str, Any], labels: tuple[str, ...], task: str) -> str | None:
    answer = (record.get("gold") or {}).get(task)
    return next((label for label in labels if label.lower() == str(answer).strip().lower()), None) \
        if isinstance(answer, str) else None


def _reasoned(record: dict[str, Any], task: str) -> dict[str, Any]:
    prediction = record["prediction"]
    return ((prediction.get("tasks") or {}).get(task) or {}) if prediction.get("ok") else {}


def _ece(rows: list[tuple[dict[str, float], str]], labels: tuple[str, ...]) -> float | None:
    from mllm_mer.stages.calibration import calibration_metrics

    if not rows:
        return None
    probs = np.asarray([[given.get(label, 0.0) for label in labels] for given, _ in rows], dtype=float)
    return calibration_metrics(probs, np.asarray([labels.index(gold) for _, gold in rows]))["ece"]


def task_comparison(records: Sequence[dict[str, Any]], ls: LabelSet) -> dict[str, Any] | None:
    """One task's comparison over the records that carry a label-first answer for it and a gold label."""
    pairs = []
    for record in records:
        first = (((record["prediction"].get("reasoning") or {}).get("label_first") or {}).get(ls.task))
        gold = _gold(record, ls.labels, ls.task)
        if first and gold:
            pairs.append((first, _reasoned(record, ls.task), gold))
    if not pairs:
        return None
    answered = [(f, r, g) for f, r, g in pairs if r.get("label")]
    changed = [(f, r, g) for f, r, g in answered if r["label"] != f["label"]]
    both = [(f, r, g) for f, r, g in pairs if f.get("probabilities") and r.get("probabilities")]
    n = len(pairs)
    return {
        "n": n, "failed_after_reasoning": n - len(answered), "changed": len(changed),
        "changed_rate": len(changed) / n,
        "changed_to_right": sum(r["label"] == g for _, r, g in changed),
        "changed_to_wrong": sum(f["label"] == g for f, _, g in changed),
        "accuracy": {"label_first": sum(f["label"] == g for f, _, g in pairs) / n,
                     "reasoned": sum(r.get("label") == g for _, r, g in pairs) / n},
        "ece": {"label_first": _ece([(f["probabilities"], g) for f, _, g in both], ls.labels),
                "reasoned": _ece([(r["probabilities"], g) for _, r, g in both], ls.labels), "n_scored": len(both)},
    }


def order_statistics(records: Sequence[dict[str, Any]], scheme: LabelScheme) -> dict[str, Any] | None:
    """metrics.json's `orders` entry: the reasoned order and, per single-label task, the comparison (None: the
    records carry no label-first answers)."""
    with_first = [r for r in records if ((r.get("prediction") or {}).get("reasoning") or {}).get("label_first")]
    if not with_first:
        return None
    tasks = {ls.task: found for ls in scheme.label_sets if not (ls.multi_label or ls.open)
             if (found := task_comparison(with_first, ls))}
    order = with_first[0]["prediction"]["reasoning"].get("order")
    return {"order": order, "tasks": tasks} if tasks else None


def _ece_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def order_summary(metrics: dict[str, Any]) -> list[str]:
    """One line per task for the printed summary and the top of report.md."""
    stats = metrics.get("orders") or {}
    lines = []
    for task, m in (stats.get("tasks") or {}).items():
        acc, ece = m["accuracy"], m["ece"]
        lines.append(f"{task}: reasoning ({stats['order']}) changed {m['changed']} of {m['n']} labels "
                     f"({m['changed_to_right']} to right, {m['changed_to_wrong']} to wrong); accuracy "
                     f"{acc['label_first']:.4f} label-first -> {acc['reasoned']:.4f} reasoned, ECE "
                     f"{_ece_text(ece['label_first'])} -> {_ece_text(ece['reasoned'])}")
        if not ece["n_scored"]:
            lines.append(f"{task}: no ECE after reasoning: add --probabilities (or use --mode score)")
    return lines


def order_section(metrics: dict[str, Any]) -> list[str]:
    """report.md's table of both orders on the same samples."""
    stats = metrics.get("orders") or {}
    if not stats.get("tasks"):
        return []
    lines = ["", "## Answer orders on the same samples", "",
             f"The label-first answer (`--reasoning none`) scored beside the reasoned one (`{stats['order']}`).", "",
             "| task | order | accuracy | ECE | labels changed by reasoning | to right | to wrong | failed "
             "after reasoning | n |", "|---|---|---|---|---|---|---|---|---|"]
    for task, m in stats["tasks"].items():
        lines.append(f"| {task} | none | {m['accuracy']['label_first']:.4f} | {_ece_text(m['ece']['label_first'])} "
                     f"| - | - | - | - | {m['n']} |")
        lines.append(f"| {task} | {stats['order']} | {m['accuracy']['reasoned']:.4f} | "
                     f"{_ece_text(m['ece']['reasoned'])} | {m['changed']} | {m['changed_to_right']} | "
                     f"{m['changed_to_wrong']} | {m['failed_after_reasoning']} | {m['n']} |")
    return lines
