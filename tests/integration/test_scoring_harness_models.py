"""The scoring harness on runs of the tiny model: multi-label manifests and open vocabulary."""
from __future__ import annotations

import json

import pandas as pd
import pytest
from helpers import MELD_DIR, requires_meld

from mllm_mer.cli import main
from mllm_mer.evaluation.set_metrics import multilabel_metrics

MELD_LABELS = ["neutral", "joy", "sadness", "anger", "surprise", "fear", "disgust"]


def _manifest(path, rows: int, multi: bool) -> None:
    df = pd.read_csv(MELD_DIR / "test_sent_emo.csv")[:rows]
    extra = ["surprise", "fear", "joy", "anger"]
    labels = [f"{e},{extra[i % 4]}" if multi and i % 2 else e for i, e in enumerate(df.Emotion)]
    pd.DataFrame({"id": [f"r{i}" for i in range(rows)], "text": df.Utterance, "label": labels}).to_csv(
        path, index=False)


@requires_meld
def test_multi_label_manifest_evaluates_and_scores(tmp_path, hf_backend):
    from mllm_mer.config import EvaluateConfig, build
    from mllm_mer.evaluation.runner import read_predictions, run_evaluation

    _manifest(tmp_path / "multi.csv", 40, multi=True)
    (tmp_path / "multi.yaml").write_text("name: multi\ntasks:\n  - task: emotion\n    multi_label: true\n"
                                         f"    labels: {MELD_LABELS}\n")
    cfg = build(EvaluateConfig, dataset="manifest", data_dir=str(tmp_path / "multi.csv"), out=str(tmp_path / "run"),
                model=hf_backend.config.model.model, template="label_only", modalities=["text"],
                labels=str(tmp_path / "multi.yaml"))
    metrics = run_evaluation(cfg, backend=hf_backend, progress=False)
    m = metrics["tasks"]["emotion"]
    assert {"subset_accuracy", "micro_f1", "macro_f1"} <= set(m) and m["n"] == 40
    records = read_predictions(tmp_path / "run" / "predictions.jsonl")
    predictions = pd.DataFrame({"id": list(records), "pred": [
        ",".join(r["prediction"]["tasks"].get("emotion", {}).get("labels") or []) if r["prediction"]["ok"] else ""
        for r in records.values()]})
    predictions.to_csv(tmp_path / "preds.csv", index=False)
    assert main(["score", str(tmp_path / "preds.csv"), "--dataset", "manifest", "--data-dir",
                 str(tmp_path / "multi.csv"), "--labels", str(tmp_path / "multi.yaml"), "--out",
                 str(tmp_path / "scored")]) == 0
    scored = json.loads((tmp_path / "scored" / "metrics.json").read_text())["tasks"]["emotion"]
    gold = [sorted(set(r["gold"]["emotion"].split(","))) for r in records.values()]
    pred = [sorted(set(p.split(","))) if p else [] for p in predictions.pred]
    expected = multilabel_metrics(gold, pred, MELD_LABELS)
    for key in ("subset_accuracy", "micro_f1", "macro_f1"):
        assert scored[key] == pytest.approx(expected[key]) == pytest.approx(m[key])


@requires_meld
def test_evaluate_open_vocabulary_on_the_tiny_model_writes_ov_metrics_and_hit_rate(tmp_path, hf_backend):
    from mllm_mer.config import EvaluateConfig, build
    from mllm_mer.evaluation.runner import run_evaluation

    cfg = build(EvaluateConfig, dataset="meld", data_dir=str(MELD_DIR), split="test", limit=24,
                out=str(tmp_path / "open"), model=hf_backend.config.model.model, template="label_only",
                modalities=["text"], labels="open")
    metrics = run_evaluation(cfg, backend=hf_backend, progress=False)
    m = metrics["tasks"]["emotion"]
    assert m["n"] == 24 and {"ov_f", "ov_precision", "ov_recall", "hit_rate"} <= set(m)
    assert set(m["per_wheel"]) == {"plutchik", "parrott", "ekman"}
    assert "hit_rate" in m["intervals"]
    report = (tmp_path / "open" / "report.md").read_text()
    assert "per emotion wheel" in report and "hit_rate" in report
