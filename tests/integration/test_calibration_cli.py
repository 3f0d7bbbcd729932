"""Calibration on the tiny model: evaluate, calibrate and evaluate calibrated through the CLI; the app applies a
calibration file."""
import json

import numpy as np
from helpers import run_cli

from mllm_mer.stages.calibration import Calibration

LABELS = ("neutral", "joy", "sadness", "anger", "surprise", "fear", "disgust")


def test_evaluate_calibrate_then_evaluate_calibrated_through_the_cli(tiny_model, tmp_path):
    from helpers import WORDS

    rng = np.random.default_rng(0)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({"id": f"s{i}", "text": " ".join(rng.choice(WORDS, 5)),
                                            "label": str(rng.choice(LABELS))}) + "\n" for i in range(24)))
    common = ["--model", tiny_model, "--dtype", "float32", "--dataset", "manifest", "--data-dir", manifest,
              "--labels", "meld", "--task", "emotion", "--mode", "score", "--template", "label_only"]
    run_cli("evaluate", *common, "--out", tmp_path / "dev")
    dev = json.loads((tmp_path / "dev" / "metrics.json").read_text())
    assert {"ece", "brier", "nll"} <= set(dev["tasks"]["emotion"])
    assert (tmp_path / "dev" / "reliability.png").stat().st_size > 0
    assert "no label probabilities" not in (tmp_path / "dev" / "report.md").read_text()

    fitted = run_cli("calibrate", tmp_path / "dev", "--out", tmp_path / "cal.json")
    assert "emotion: temperature" in fitted.stdout and "ECE" in fitted.stdout
    import re

    before, after = map(float, re.search(r"ECE ([\d.]+) -> ([\d.]+)", fitted.stdout).groups())
    assert after <= before, fitted.stdout  # never a calibration that makes ECE worse where it was checked
    saved = json.loads((tmp_path / "cal.json").read_text())
    assert saved["scheme"] == "meld" and saved["tasks"]["emotion"]["labels"] == list(LABELS)
    assert "  warning: " in fitted.stdout and "fitted on 24 rows (fewer than 50)" in fitted.stdout
    assert "fitted on 24 rows" in saved["tasks"]["emotion"]["warning"]

    run_cli("evaluate", *common, "--out", tmp_path / "calibrated", "--calibration", tmp_path / "cal.json")
    calibrated = json.loads((tmp_path / "calibrated" / "metrics.json").read_text())
    assert calibrated["run"]["calibrated"] is True
    # the labels are the same (temperature keeps the arg-max); the probabilities are rescaled
    assert calibrated["tasks"]["emotion"]["accuracy"] == dev["tasks"]["emotion"]["accuracy"]
    assert calibrated["tasks"]["emotion"]["nll"] <= dev["tasks"]["emotion"]["nll"] + 1e-9
    assert "probabilities temperature-scaled" in (tmp_path / "calibrated" / "report.md").read_text()

    refused = run_cli("evaluate", *common[:-6], "--labels", "iemocap4", "--task", "emotion", "--out",
                      tmp_path / "other", "--calibration", tmp_path / "cal.json", check=False)
    assert refused.returncode == 2 and "label set 'iemocap4'" in refused.stderr and "Traceback" not in refused.stderr


def test_the_app_applies_a_calibration_file_and_says_so(tiny_model, hf_backend, meld_spec, tmp_path):
    from mllm_mer.app.service import AnalyseRequest, Service
    from mllm_mer.app.ui import _task_panel
    from mllm_mer.config import AppConfig, build

    calibration = tmp_path / "calibration.json"
    calibration.write_text(Calibration("meld", {"emotion": 3.0}, {"emotion": meld_spec.task("emotion").labels})
                           .to_json())
    request = AnalyseRequest(transcript="You did WHAT?", template="label_only", modalities=("text",), mode="score")
    results = {}
    for name, extra in (("raw", {}), ("calibrated", {"calibration": str(calibration)})):
        service = Service(build(AppConfig, model=str(tiny_model), runs_dir=str(tmp_path / name), **extra),
                          backend=hf_backend)
        [results[name]] = service.analyse_many([request])
    raw, calibrated = (results[k] for k in ("raw", "calibrated"))
    assert calibrated.calibrated and not raw.calibrated
    p_raw = raw.prediction.tasks["emotion"].probabilities
    p_cal = calibrated.prediction.tasks["emotion"].probabilities
    assert max(p_cal.values()) < max(p_raw.values())  # T = 3 flattens the distribution
    assert _task_panel(calibrated, 0, tmp_path).label == "emotion (calibrated probabilities)"
    assert _task_panel(raw, 0, tmp_path).label == "emotion"
