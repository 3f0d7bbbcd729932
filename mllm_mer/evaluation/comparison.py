"""`mllm-mer compare`: finished runs side by side, each headline value with its bootstrap interval, and
paired tests of every later run against the first over the samples both answered (exact McNemar for
accuracy, a paired bootstrap for weighted F1)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from mllm_mer.core.labels import fold
from mllm_mer.evaluation.judge_identity import same_judge
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
                    f"| run | task | modalities | {' | '.join(keys)} | ECE | AURC | failed | gold not scored "
                    "| samples |",
                    "|---" * (len(keys) + 8) + "|"]
                shown = keys
            lines.append(f"| {name} | {task} | {modalities} | " + " | ".join(with_interval(m, k) for k in keys)
                         + (f" | {m['ece']:.4f}" if "ece" in m else " | -")
                         + (f" | {m['aurc']:.4f}" if "aurc" in m else " | -")
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


# Settings read from each run's launch configuration besides its fingerprint (which leaves defaults out):
# those that change answers or how they are judged, so that a difference between runs has a named cause.
COMPARED_SETTINGS = ("model", "adapter", "backend", "labels", "template", "mode", "modalities", "strategy",
                     "context_labels", "context_window", "calibration", "max_new_tokens", "temperature", "samples")
PRIORITY = ("backend", "mode", "template", "context_labels", "order", "judge")


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        return {k: v for key, inner in value.items() for k, v in _flat(inner, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): value}


def run_settings(run_dir: str | Path) -> dict[str, Any] | None:
    """One run's settings as dotted names -> values, from its run.json (None: the run has none)."""
    path = Path(run_dir) / "run.json"
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    config = (saved.get("provenance") or {}).get("config") or {}
    found = {k: config[k] for k in config if k in COMPARED_SETTINGS or "order" in k or "judge" in k}
    for key, value in saved.items():
        if key not in ("provenance", "schema"):
            found.update(_flat(value, "" if key == "fingerprint" else f"{key}."))
    found.pop("data_dir", None)  # the same data may lie in two places; `sample_set` says whether it is the same
    found.pop("data.data_dir", None)
    return found


def _shown(value: Any) -> str:
    if value is None:
        return "-"
    text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
    return text.replace("|", "\\|") if len(text) <= 60 else text[:57].replace("|", "\\|") + "..."


def _priority(key: str) -> int:
    parts = key.split(".")
    return next((i for i, p in enumerate(PRIORITY) if any(x == p or x.startswith(p + "_") for x in parts)),
                len(PRIORITY))


def difference_rows(names: list[str], settings: list[dict[str, Any] | None]) -> list[str]:
    """A row per setting whose value is not the same in every run (a fingerprint leaves defaults out:
    a setting one run lacks shows as '(default)'), the usual causes of a difference first."""
    if all(s is None for s in settings):
        return ["", "## How the runs differ", "", "No run has a run.json: their settings cannot be compared."]
    keys = sorted({k for s in settings if s for k in s}, key=lambda k: (_priority(k), k))
    rows = []
    for key in keys:
        values = [("(no run.json)" if s is None else _shown(s[key]) if key in s else "(default)") for s in settings]
        if len(set(values)) > 1:
            rows.append(f"| {key} | " + " | ".join(values) + " |")
    head = ["", "## How the runs differ", ""]
    if not rows:
        return head + ["The runs share every recorded setting (model, backend, mode, template, context, strategy)."]
    return head + [f"| setting | {' | '.join(names)} |", "|---" * (len(names) + 1) + "|", *rows]


def check_judges(runs: list[tuple[str, dict[str, Any]]]) -> None:
    """Judged numbers stand side by side only when one judge made them all."""
    judged = [(name, m["judge"]) for name, m in runs if m.get("judge")]
    if not same_judge([j for _, j in judged]):
        raise ValueError("these runs were judged by different judges (" + ", ".join(
            f"{name}: {j['model']} {j['id']}" for name, j in judged) + "); their judged numbers are not comparable: "
            "rescore them under one judge, or add --mixed-judges to show them anyway")


def compare_runs(run_dirs: list[str | Path], mixed_judges: bool = False) -> str:
    """Headline metrics of several runs with intervals, how their settings differ, then paired tests
    against the first run."""
    runs = [(Path(d).name, _metrics(d)) for d in run_dirs]
    if not mixed_judges:
        check_judges(runs)
    lines = (headline_rows(runs) + ["", f"In brackets: {NOTE}."]
             + difference_rows([name for name, _ in runs], [run_settings(d) for d in run_dirs])
             + paired_rows(runs, list(run_dirs)))
    if len({m.get("sample_set") for _, m in runs}) > 1:
        lines.append("\n**warning: these runs cover different samples; their numbers are not comparable "
                     "(the paired tests use only the samples both answered).**")
    return "\n".join(lines)
