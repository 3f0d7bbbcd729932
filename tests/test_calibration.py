"""Calibration: temperature scaling fitted on a dev run, ECE/Brier/NLL, the calibrate verb end to end."""
import json

import numpy as np
import pytest
from helpers import run_cli

from mllm_mer.core.labels import load_label_scheme
from mllm_mer.stages.calibration import Calibration, arrays, calibration_metrics, fit, rescale, rescale_rows

LABELS = ("neutral", "joy", "sadness", "anger", "surprise", "fear", "disgust")


def overconfident_records(n: int, seed: int, sharpen: float = 3.0) -> list[dict]:
    """Unit-test data (a stand-in for a model, named as such): gold drawn from a true distribution,
    reported probabilities that distribution sharpened, i.e. over-confident."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        truth = rng.dirichlet(np.ones(len(LABELS)) * 0.7)
        gold = LABELS[rng.choice(len(LABELS), p=truth)]
        reported = rescale_rows(truth[None, :], 1 / sharpen)[0]
        probabilities = dict(zip(LABELS, reported.tolist(), strict=True))
        records.append({"id": str(i), "gold": {"emotion": gold},
                        "prediction": {"ok": True, "tasks": {"emotion": {"label": max(probabilities,
                                                                                      key=probabilities.get),
                                                                         "probabilities": probabilities}}}})
    return records


def test_temperature_fitted_on_dev_lowers_ece_on_held_out_data():
    scheme = load_label_scheme("meld")
    calibration = fit(overconfident_records(600, seed=1), scheme, fitted_on="dev")
    assert calibration.temperatures["emotion"] > 1.5  # over-confidence is softened
    test = overconfident_records(600, seed=2)
    probs, gold = arrays(test, "emotion", LABELS)
    before = calibration_metrics(probs, gold)
    after = calibration_metrics(rescale_rows(probs, calibration.temperatures["emotion"]), gold)
    assert after["ece"] < 0.5 * before["ece"], (before, after)
    assert after["nll"] < before["nll"] and after["brier"] < before["brier"]
    print(f"held-out ECE {before['ece']:.3f} -> {after['ece']:.3f}")


def test_a_fit_on_a_bound_or_on_few_rows_says_so():
    """Probabilities that carry no information about the gold label push T to the search bound: the fit
    searches wider bounds, then says it hit one; a sound fit on enough rows has no warning."""
    from mllm_mer.stages.calibration import WIDE_BOUNDS

    scheme = load_label_scheme("meld")
    assert fit(overconfident_records(600, seed=1), scheme).warnings == {}
    rng = np.random.default_rng(5)
    noise = overconfident_records(600, seed=3)
    for record in noise:  # confident answers, gold independent of them
        record["gold"]["emotion"] = str(rng.choice(LABELS))
    fitted = fit(noise, scheme)
    assert fitted.temperatures["emotion"] > 20.0  # beyond the first bounds: the search was widened
    assert fitted.temperatures["emotion"] == pytest.approx(WIDE_BOUNDS[1], rel=0.02)
    assert "hit the search bound" in fitted.warnings["emotion"] and "no information" in fitted.warnings["emotion"]
    few = fit(overconfident_records(40, seed=1), scheme)
    assert few.warnings["emotion"] == "fitted on 40 rows (fewer than 50): a rough estimate"
    assert json.loads(few.to_json())["tasks"]["emotion"]["warning"] == few.warnings["emotion"]


def test_rescaling_keeps_the_label_and_a_distribution():
    probs = {"a": 0.7, "b": 0.2, "c": 0.1}
    for t in (0.3, 1.0, 4.0):
        scaled = rescale(probs, t)
        assert max(scaled, key=scaled.get) == "a" and sum(scaled.values()) == pytest.approx(1.0)
    assert rescale(probs, 4.0)["a"] < 0.7 < rescale(probs, 0.5)["a"]


def test_a_calibration_for_another_label_set_is_refused():
    calibration = Calibration(scheme="meld", temperatures={"emotion": 2.0}, labels={"emotion": LABELS})
    calibration.check(load_label_scheme("meld"))
    with pytest.raises(ValueError, match="label set 'iemocap4'"):
        calibration.check(load_label_scheme("iemocap4"))


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
    from mllm_mer.stages.calibration import Calibration

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
