"""Run reports: report.md, confusion.png, and side-by-side comparison of runs."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from mllm_mer.evaluation.faithfulness import faithfulness_section, faithfulness_summary
from mllm_mer.evaluation.judged_report import judged_lines, selective_lines
from mllm_mer.evaluation.orders import order_section, order_summary
from mllm_mer.strategies.reporting import strategy_sections, strategy_summary

HEADLINE = ("accuracy", "weighted_f1", "macro_f1", "uar", "failure_rate")


def headline_of(m: dict[str, Any]) -> tuple[str, ...]:
    """A task's headline metrics: single-label, multi-label and open-vocabulary tasks each have theirs."""
    return tuple(m.get("headline") or HEADLINE)


def with_interval(m: dict[str, Any], key: str) -> str:
    """`0.5123 [0.4810, 0.5440]`: the value and its bootstrap interval, where there is one."""
    bounds = (m.get("intervals") or {}).get(key)
    return f"{m[key]:.4f}" + (f" [{bounds[0]:.4f}, {bounds[1]:.4f}]" if bounds else "")


def headline_tables(tasks: dict[str, dict[str, Any]]) -> list[str]:
    """One table per kind of headline (consecutive tasks that share it), each value with its interval."""
    lines: list[str] = []
    shown: tuple[str, ...] = ()
    for task, m in tasks.items():
        keys = headline_of(m)
        if keys != shown:
            lines += ([""] if lines else []) + ["| task | " + " | ".join(keys) + " | n |",
                                                "|---" * (len(keys) + 2) + "|"]
            shown = keys
        lines.append(f"| {task} | " + " | ".join(with_interval(m, k) for k in keys) + f" | {m['n']} |")
    return lines


def plot_confusions(metrics: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    tasks = {t: m for t, m in metrics.get("tasks", {}).items() if "confusion" in m}
    if not tasks:
        path.unlink(missing_ok=True)
        return
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 5), squeeze=False)
    for ax, (task, m) in zip(axes[0], tasks.items(), strict=False):
        labels = m["confusion"]["labels"]
        matrix = np.array(m["confusion"]["matrix"], dtype=float)
        gold_labels = [label for label in labels if label != "<failed>"]  # a failure is an answer, never gold
        matrix = matrix[:len(gold_labels)]
        rows = matrix.sum(axis=1, keepdims=True)
        normalised = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
        image = ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the gold row")
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
        ax.set_yticks(range(len(gold_labels)), gold_labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("gold")
        # Colour is the share of its row (recall per gold label); the number in a cell is its count.
        ax.set_title(f"{task} (acc {m['accuracy']:.3f}, n={m['n']})\ncolour: share of the gold row; numbers: counts",
                     fontsize=9)
        for i in range(len(gold_labels)):
            for j in range(len(labels)):
                if matrix[i, j]:
                    ax.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=8,
                            color="white" if normalised[i, j] > 0.5 else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def summary(metrics: dict[str, Any]) -> list[str]:
    """What a person must know before reading the numbers: failures by kind, unusable gold labels."""
    kinds = metrics.get("failures_by_kind") or {}
    line = f"{metrics['n_samples']} samples, {metrics['n_failed']} failed"
    if kinds:
        line += " (" + ", ".join(f"{k.replace('_', ' ')} {n}" for k, n in sorted(kinds.items())) + ")"
    lines = [line]
    coverage = metrics.get("coverage") or {}
    if coverage.get("partial"):
        lines.append(f"partial: {coverage['answered']} of {coverage['of']}")
    if retried := metrics.get("retried"):
        lines.append("answered again: " + ", ".join(f"{n} that had failed ({k})" for k, n in sorted(retried.items()))
                     + "; their earlier failures are replaced")
    if present := metrics.get("modalities_present"):
        lines.append("modalities present: " + ", ".join(f"{m} {n}/{metrics['n_samples']}" for m, n in present.items()))
    lines += [f"warning: {w}" for w in metrics.get("warnings") or []]
    for task, issue in (metrics.get("gold_issues") or {}).items():
        if issue.get("outside_label_set") or issue.get("missing"):
            lines.append(f"{task}: {issue['outside_label_set']} gold labels outside the label set and "
                         f"{issue['missing']} missing: not scored")
        names = (metrics.get("tasks", {}).get(task) or {}).get("gold_outside_names")
        if names:
            lines.append(f"{task}: gold labels outside the label set: "
                         + ", ".join(f"{k} {n}" for k, n in list(names.items())[:10]))
        if aliased := (metrics.get("tasks", {}).get(task) or {}).get("gold_aliases"):
            lines.append(f"{task}: gold labels read through aliases: "
                         + ", ".join(f"{k} {n}" for k, n in aliased.items()))
    lines += (metrics.get("scored") or {}).get("summary") or []
    lines += strategy_summary(metrics) + order_summary(metrics) + faithfulness_summary(metrics)
    tasks = metrics.get("tasks") or {}
    if (metrics.get("run") or {}).get("mode") == "generate" and tasks and not any("ece" in m for m in tasks.values()):
        lines.append("no label probabilities were computed (generate mode), so no ECE, Brier or NLL: add "
                     "--probabilities (one extra scoring pass) or use --mode score")
    return lines


def dialogue_section(metrics: dict[str, Any]) -> list[str]:
    """Emotion shifts and per-speaker accuracy of a dialogue dataset."""
    d = metrics.get("dialogue")
    if not d:
        return []
    mode = d.get("context_labels", "none")
    note = {"gold": " (earlier turns carry their gold labels: oracle information, not a fair comparison)",
            "predicted": " (earlier turns carry the model's own predictions)",
            "none": " (earlier turns are shown without labels)"}.get(mode, "")
    lines = ["", "## Dialogue", "", f"{d['dialogues']} dialogues; context labels: {mode}{note}", "",
             "| shift precision | shift recall | shift F1 | gold shifts | predicted shifts |", "|---|---|---|---|---|",
             f"| {d['shift_precision']:.4f} | {d['shift_recall']:.4f} | {d['shift_f1']:.4f} | {d['gold_shifts']} | "
             f"{d['predicted_shifts']} |", "", "| speaker | accuracy | utterances |", "|---|---|---|"]
    lines += [f"| {name} | {s['accuracy']:.4f} | {s['n']} |" for name, s in d["speaker_accuracy"].items()]
    return lines


def strategy_section(metrics: dict[str, Any]) -> list[str]:
    """The run's strategy and its settings, then what each strategy reports of its extras (its own section)."""
    strategy = (metrics.get("run") or {}).get("strategy") or {}
    sections = strategy_sections(metrics)
    if not sections and strategy.get("strategy", "single") == "single":
        return []
    return ["", "## Strategy", "", "`" + ", ".join(f"{k}={v}" for k, v in strategy.items()) + "`", *sections]


def excluded_gold(metrics: dict[str, Any], task: str) -> int:
    issue = (metrics.get("gold_issues") or {}).get(task) or {}
    return int(issue.get("outside_label_set", 0)) + int(issue.get("missing", 0))


def per_task_sections(tasks: dict[str, dict[str, Any]]) -> list[str]:
    """Per class (closed and multi-label sets) or per wheel (open vocabulary), per task."""
    lines: list[str] = []
    for task, m in tasks.items():
        if "per_wheel" in m:
            lines += ["", f"## {task}: per emotion wheel", "", "| wheel | precision | recall | F |",
                      "|---|---|---|---|"]
            lines += [f"| {w} | {c['precision']:.4f} | {c['recall']:.4f} | {c['f']:.4f} |"
                      for w, c in m["per_wheel"].items()]
            lines += ["", f"empty answers: {m['empty_answers']}; words outside the vocabulary: "
                      + (", ".join(f"{k} {n}" for k, n in m["words_outside_vocabulary"].items()) or "none")]
            continue
        lines += ["", f"## {task}: per class", "", "| label | precision | recall | F1 | support |",
                  "|---|---|---|---|---|"]
        for label, c in m["per_class"].items():
            lines.append(f"| {label} | {c['precision']:.4f} | {c['recall']:.4f} | {c['f1']:.4f} | {c['support']} |")
    return lines


def write_report(metrics: dict[str, Any], path: Path) -> None:
    run = metrics.get("run", {})
    lines = [f"# {run.get('dataset', '?')}" + (f" / {run['split']}" if run.get("split") else ""), "",
             f"model `{run.get('model')}`" + (f", adapter `{run['adapter']}`" if run.get("adapter") else "")
             + f", backend {run.get('backend')}, template `{run.get('template')}`, mode {run.get('mode')}, "
             f"modalities {', '.join(run.get('modalities', [])) or '-'}", "",
             "; ".join(summary(metrics))
             + (f"; {metrics['throughput_samples_per_s']:.2f} samples/s over inference"
                + (f" (engine start {metrics['timing']['engine_start_s']:.1f} s, not counted)"
                   if metrics.get("timing", {}).get("engine_start_s") else "")
                if metrics.get("throughput_samples_per_s") else ""), ""] + headline_tables(metrics["tasks"])
    if metrics.get("intervals_note"):
        lines += ["", f"In brackets: {metrics['intervals_note']}."]
    calibrated = {t: m for t, m in metrics["tasks"].items() if "ece" in m}
    if calibrated:
        note = " (probabilities temperature-scaled)" if metrics.get("run", {}).get("calibrated") else ""
        lines += ["", f"## Calibration{note}", "", "| task | ECE (15 bins) | Brier | NLL | n |",
                  "|---|---|---|---|---|"]
        lines += [f"| {t} | {m['ece']:.4f} | {m['brier']:.4f} | {m['nll']:.4f} | {m['n_scored']} |"
                  for t, m in calibrated.items()]
        if (path.parent / "reliability.png").is_file():
            lines += ["", "![reliability diagram](reliability.png)"]
    lines += selective_lines(metrics["tasks"]) + judged_lines(metrics)
    lines += strategy_section(metrics) + order_section(metrics) + faithfulness_section(metrics)
    lines += dialogue_section(metrics)
    if reg := metrics.get("regression"):
        lines += ["", "| acc-2 | acc-7 | MAE | corr |", "|---|---|---|---|",
                  "| " + " | ".join("-" if reg.get(k) is None else f"{reg[k]:.4f}"
                                    for k in ("acc2", "acc7", "mae", "corr")) + " |"]
    lines += per_task_sections(metrics["tasks"])
    if (path.parent / "confusion.png").is_file():
        lines += ["", "![confusion matrices](confusion.png)"]
    if metrics["failures"]:
        lines += ["", "## Failures", ""] + [f"- `{f['id']}`: {f['error']}" for f in metrics["failures"][:100]]
        if len(metrics["failures"]) > 100:
            lines.append(f"- ... and {len(metrics['failures']) - 100} more (metrics.json lists all)")
    path.write_text("\n".join(lines) + "\n")
