"""`mllm-mer compare`: finished runs side by side, each headline value with its bootstrap interval, and
paired tests of every later run against the first over the samples both answered (exact McNemar for
accuracy, a paired bootstrap for weighted F1)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from mllm_mer.core.labels import fold
from mllm_mer.evaluation.records import read_predictions
from mllm_mer.evaluation.report import excluded_gold, headline_of, with_interval
from mllm_mer.evaluation.uncertainty import NOTE, confusion_stat, group_ids, mcnemar, paired_bootstrap

ALPHA = 0.05


def _metrics(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / "metrics.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (has the run finished?)")
    return json.loads(path.read_text())


def _row_facts(metrics: dict[str, Any]) -> tuple[str, str]:
    modalities = ",".join(metrics.get("run", {}).get("modalities", []))
    present = metrics.get("modalities_present")
    if present:  # what the samples had, not only what was asked (MELD has no video without clips)
        modalities = ",".join(m for m, n in present.items() if n) or "none"
    coverage = metrics.get("coverage") or {}
    samples = (f"partial: {coverage['answered']} of {coverage['of']}" if coverage.get("partial")
               else str(metrics["n_samples"]))
    return modalities or "-", samples


def headline_rows(runs: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """A row per run and task, every headline value with its interval; a new header where the kind of
    task (single-label, multi-label, open vocabulary) changes the headline."""
    lines: list[str] = []
    shown: tuple[str, ...] = ()
    for name, metrics in runs:
        modalities, samples = _row_facts(metrics)
        for task, m in metrics["tasks"].items():
            keys = headline_of(m)
            if keys != shown:
                lines += ([""] if lines else []) + [
                    f"| run | task | modalities | {' | '.join(keys)} | ECE | failed | gold not scored | samples |",
                    "|---" * (len(keys) + 7) + "|"]
                shown = keys
            lines.append(f"| {name} | {task} | {modalities} | " + " | ".join(with_interval(m, k) for k in keys)
                         + (f" | {m['ece']:.4f}" if "ece" in m else " | -")
                         + f" | {metrics['n_failed']} | {excluded_gold(metrics, task)} | {samples} |")
    return lines


def _answers(run_dir: str | Path, task: str) -> dict[str, tuple[str, str | None, Any]]:
    """Sample id -> (gold, predicted or None, dialogue) of one single-label task, case-folded."""
    found = {}
    for sample_id, record in read_predictions(Path(run_dir) / "predictions.jsonl").items():
        gold = (record.get("gold") or {}).get(task)
        if gold is None or isinstance(gold, list):
            continue
        prediction = record["prediction"]
        label = ((prediction.get("tasks") or {}).get(task) or {}).get("label") if prediction.get("ok") else None
        found[sample_id] = (fold(gold), fold(label) if label is not None else None, record.get("dialogue"))
    return found


def paired_test(first: str | Path, other: str | Path, task: str) -> dict[str, Any] | None:
    """McNemar (exact) on accuracy and a paired bootstrap of weighted F1 (other - first), over the
    samples with gold that both runs hold."""
    a, b = _answers(first, task), _answers(other, task)
    common = sorted(set(a) & set(b))
    if not common:
        return None
    gold = [a[i][0] for i in common]
    labels = sorted(set(gold))
    index = {label: n for n, label in enumerate(labels)}
    g = np.array([index[x] for x in gold])
    k = len(labels)
    pred_a = np.array([index.get(a[i][1], k) for i in common])
    pred_b = np.array([index.get(b[i][1], k) for i in common])
    present = np.ones(k, dtype=bool)
    groups = group_ids([a[i][2] for i in common], len(common)) if any(a[i][2] is not None for i in common) \
        else np.arange(len(common))
    test = mcnemar(pred_a == g, pred_b == g)
    f1 = paired_bootstrap(confusion_stat(g, pred_a, k, present), confusion_stat(g, pred_b, k, present),
                          "weighted_f1", groups)
    return {"n": len(common), "accuracy_a": float(np.mean(pred_a == g)), "accuracy_b": float(np.mean(pred_b == g)),
            "mcnemar": test, "weighted_f1": f1}


def paired_rows(runs: list[tuple[str, dict[str, Any]]], run_dirs: list[str | Path]) -> list[str]:
    """Each later run against the first, per single-label task both have."""
    lines = ["", "## Paired tests against the first run", "",
             "| task | first | other | paired samples | accuracy first / other | McNemar p (exact) | "
             "weighted F1 difference [95% CI] | paired bootstrap p | verdict at 5% |", "|---" * 9 + "|"]
    rows = 0
    for (name, metrics), run_dir in zip(runs[1:], run_dirs[1:], strict=True):
        for task, m in metrics["tasks"].items():
            if "confusion" not in m or "confusion" not in runs[0][1]["tasks"].get(task, {}):
                continue  # single-label tasks of both runs only
            found = paired_test(run_dirs[0], run_dir, task)
            if found is None:
                continue
            rows += 1
            p, f1 = found["mcnemar"]["p_value"], found["weighted_f1"]
            differ = p < ALPHA or f1["p_value"] < ALPHA
            lines.append(f"| {task} | {runs[0][0]} | {name} | {found['n']} | {found['accuracy_a']:.4f} / "
                         f"{found['accuracy_b']:.4f} | {p:.4g} | {f1['difference']:+.4f} [{f1['interval'][0]:+.4f}, "
                         f"{f1['interval'][1]:+.4f}] | {f1['p_value']:.4g} | "
                         + ("differ" if differ else "cannot be told apart") + " |")
    return lines if rows else []


def compare_runs(run_dirs: list[str | Path]) -> str:
    """Headline metrics of several runs with intervals, then paired tests against the first run."""
    runs = [(Path(d).name, _metrics(d)) for d in run_dirs]
    lines = headline_rows(runs) + ["", f"In brackets: {NOTE}."] + paired_rows(runs, list(run_dirs))
    if len({m.get("sample_set") for _, m in runs}) > 1:
        lines.append("\n**warning: these runs cover different samples; their numbers are not comparable "
                     "(the paired tests use only the samples both answered).**")
    return "\n".join(lines)
