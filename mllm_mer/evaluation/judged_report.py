"""The report's sections for selective prediction and for judged numbers, each judged number beside the
judge that produced it."""
from __future__ import annotations

from typing import Any


def selective_lines(tasks: dict[str, dict[str, Any]]) -> list[str]:
    """AURC per task, and what abstaining below the chosen probability kept."""
    rows = {t: m for t, m in tasks.items() if "aurc" in m}
    if not rows:
        return []
    lines = ["", "## Selective prediction", "", "| task | AURC | abstain below | coverage | abstained | "
             "selective accuracy |", "|---|---|---|---|---|---|"]
    for task, m in rows.items():
        a = m.get("abstention") or {}
        kept = [f"{a['threshold']:.2f}", f"{a['coverage']:.4f}", str(a["abstained"]),
                "-" if a["selective_accuracy"] is None else f"{a['selective_accuracy']:.4f}"] if a else ["-"] * 4
        lines.append(f"| {task} | {m['aurc']:.4f} | " + " | ".join(kept) + " |")
    return lines


def judge_line(judge: dict[str, Any]) -> str:
    weights = judge.get("files_sha256") or (judge.get("server_model_card") or {}).get("root") or "-"
    return (f"judge `{judge['model']}` ({judge['backend']}), id `{judge['id']}`, files {str(weights)[:16]}, "
            f"prompts " + ", ".join(f"{k} {v[:8]}" for k, v in (judge.get("prompts") or {}).items()))


def judged_lines(metrics: dict[str, Any]) -> list[str]:
    """Open vocabulary by synonym groups and descriptions against references, with who judged them."""
    grouped = {t: m["synonym_groups"] for t, m in (metrics.get("tasks") or {}).items() if "synonym_groups" in m}
    rated = metrics.get("against_reference")
    if not grouped and not rated:
        return []
    lines = ["", "## Judged and grouped"]
    if judge := metrics.get("judge"):
        lines += ["", judge_line(judge) + f"; verdicts asked this time: {judge.get('verdicts_asked', '-')}"]
    for task, g in grouped.items():
        ci = g.get("intervals", {})
        lines += ["", f"{task}, synonym groups from {g['groups_from']} ({g['grouped']} of {g['n']} samples grouped):",
                  "", "| OV mean | precision | recall |", "|---|---|---|",
                  "| " + " | ".join(f"{g[k]:.4f}" + (f" [{ci[k][0]:.4f}, {ci[k][1]:.4f}]" if k in ci else "")
                                   for k in ("ov_mean", "ov_precision", "ov_recall")) + " |"]
    if rated and rated.get("n"):
        ci = rated["intervals"]
        lines += ["", f"Against the reference descriptions ({rated['n']} rated, {rated['unrated']} not), 0-10:", "",
                  "| clue overlap | label overlap |", "|---|---|",
                  "| " + " | ".join(f"{rated[k]:.2f} [{ci[k][0]:.2f}, {ci[k][1]:.2f}]"
                                   for k in ("clue_overlap", "label_overlap")) + " |"]
    return lines
