"""Selective prediction on an evaluate run: AURC in metrics.json and the report, and `--abstain-below`
re-reading a finished run (the threshold is no part of the run's identity, so nothing is answered again)."""
from __future__ import annotations

import json

from helpers import MELD_DIR, requires_meld

from mllm_mer.cli import main


@requires_meld
def test_a_rising_abstention_threshold_lowers_coverage_on_a_finished_run(tmp_path, tiny_model):
    out = tmp_path / "run"
    base = ["evaluate", "--model", str(tiny_model), "--dataset", "meld", "--data-dir", str(MELD_DIR), "--split",
            "test", "--limit", "30", "--modalities", "text", "--template", "label_only", "--mode", "score",
            "--out", str(out)]
    assert main(base) == 0
    first = json.loads((out / "metrics.json").read_text())["tasks"]["emotion"]
    assert 0 <= first["aurc"] <= 1 and "abstention" not in first
    lines = (out / "predictions.jsonl").read_text()
    probs = sorted(max(json.loads(r)["prediction"]["tasks"]["emotion"]["probabilities"].values())
                   for r in lines.splitlines())
    kept = []
    for threshold in (probs[0], probs[len(probs) // 2], probs[-1] + 1e-9):
        assert main([*base, "--abstain-below", str(min(threshold, 1.0))]) == 0  # a resumed run: metrics only
        assert (out / "predictions.jsonl").read_text() == lines
        kept.append(json.loads((out / "metrics.json").read_text())["tasks"]["emotion"]["abstention"])
    assert [k["coverage"] for k in kept] == sorted((k["coverage"] for k in kept), reverse=True)
    assert kept[0]["coverage"] == 1.0 and kept[-1]["coverage"] == 0.0 and kept[-1]["abstained"] == 30
    assert "## Selective prediction" in (out / "report.md").read_text()
