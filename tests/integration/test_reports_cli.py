"""Plots and reports where a user meets them, the CLI as typed: a calibration that would make ECE worse is
refused with a warning, and `compare` names how runs differ (backend, mode, template, answer order, judge)."""
import json
import re
import shutil

import numpy as np
from helpers import MELD_DIR, requires_meld, run_cli

LABELS = ("neutral", "joy", "sadness", "anger", "surprise", "fear", "disgust")


def _overconfident_dev_run(folder, n: int = 400):
    """A finished dev run, written as its files: each answer is right exactly as often as it is confident (ECE
    near 0), but a wrong one gives the gold label almost nothing, so NLL's optimum flattens every answer, and
    ECE rises with it."""
    folder.mkdir()
    lines = []
    for i in range(n):
        top = i % len(LABELS)
        gold = (top + 2) % len(LABELS) if i % 5 == 0 else top
        p = np.full(len(LABELS), 1e-4)
        p[top], p[(top + 1) % len(LABELS)] = 0.8, 0.2 - 5e-4
        lines.append({"id": f"s{i}", "gold": {"emotion": LABELS[gold]},
                      "prediction": {"sample_id": f"s{i}", "ok": True, "tasks": {"emotion": {
                          "label": LABELS[top], "probabilities": dict(zip(LABELS, p.tolist(), strict=True))}}}})
    (folder / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    (folder / "metrics.json").write_text(json.dumps({"run": {"labels": "meld", "split": "dev", "mode": "score"}}))
    return folder


def test_calibrate_that_would_make_ece_worse_warns_and_keeps_the_identity(tmp_path):
    run = _overconfident_dev_run(tmp_path / "dev")
    fitted = run_cli("calibrate", run, "--out", tmp_path / "cal.json", timeout=120)
    line = next(x for x in fitted.stdout.splitlines() if x.startswith("emotion: "))
    before, after = re.search(r"ECE ([\d.]+) -> ([\d.]+)", line).groups()
    assert "temperature 1.000" in line and before == after, fitted.stdout  # the identity: nothing rescaled
    assert "made ECE worse on the run it was fitted on" in fitted.stdout and "kept T = 1" in fitted.stdout
    saved = json.loads((tmp_path / "cal.json").read_text())["tasks"]["emotion"]
    assert saved["temperature"] == 1.0 and "made ECE worse" in saved["warning"]


def _differ(table: str) -> list[str]:
    return [x for x in table.split("## How the runs differ", 1)[1].split("\n## ", 1)[0].splitlines()
            if x.startswith("| ") and not x.startswith("| setting")]


@requires_meld
def test_compare_names_the_backend_mode_template_and_answer_order_in_which_runs_differ(tiny_model, tmp_path):
    common = ["--model", tiny_model, "--dtype", "float32", "--dataset", "meld", "--data-dir", MELD_DIR, "--split",
              "test", "--limit", "4", "--modalities", "text"]
    run_cli("evaluate", *common, "--template", "label_only", "--mode", "score", "--out", tmp_path / "a")
    run_cli("evaluate", *common, "--template", "zero_shot", "--reasoning", "before", "--max-reasoning-tokens", "8",
            "--max-new-tokens", "48", "--out", tmp_path / "b")
    # MELD's rows are turns of dialogues: the report says how earlier turns were shown, in words
    report = (tmp_path / "a" / "report.md").read_text()
    assert "context labels: none (earlier turns are shown without labels)" in report and "(none)" not in report
    # Run `a` as it would be on vLLM: its directory copied and its run.json saying so (no engine started here).
    c = shutil.copytree(tmp_path / "a", tmp_path / "c")
    saved = json.loads((c / "run.json").read_text())
    saved["fingerprint"]["backend"] = saved["provenance"]["config"]["backend"] = "vllm"
    (c / "run.json").write_text(json.dumps(saved))
    rows = _differ(run_cli("compare", tmp_path / "a", tmp_path / "b", c).stdout)
    assert rows[0] == "| backend | transformers | transformers | vllm |", rows  # the usual causes first
    assert "| mode | score | generate | score |" in rows
    assert "| template | label_only | zero_shot | label_only |" in rows
    assert any("reasoning" in r.split("|")[1] and "| before |" in r for r in rows), rows  # the answer order
    assert not any(r.startswith(("| model |", "| labels |", "| out |")) for r in rows), rows  # the same, or no setting


def test_compare_names_the_judge_in_which_scored_runs_differ(tiny_model, tmp_path):
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps({"id": f"s{i}", "text": "...", "label": gold}) + "\n"
                                for i, gold in enumerate(["['happy', 'relieved']", "['angry']", "['sad']"])))
    answers = tmp_path / "answers.csv"
    answers.write_text("id,pred\ns0,\"['joyful']\"\ns1,\"furious, annoyed\"\ns2,sad\n")
    base = ["score", answers, "--dataset", "manifest", "--data-dir", manifest, "--labels", "open"]
    run_cli(*base, "--out", tmp_path / "lexicon")
    run_cli(*base, "--judge-model", tiny_model, "--out", tmp_path / "judged")
    judge = json.loads((tmp_path / "judged" / "metrics.json").read_text())["judge"]
    rows = _differ(run_cli("compare", tmp_path / "lexicon", tmp_path / "judged").stdout)
    assert rows[0] == f"| judge | (default) | {judge['id']} |", rows  # the judge's identity, then its model
    assert rows[1].startswith(f"| judge_model | - | {str(tiny_model)[:40]}"), rows
