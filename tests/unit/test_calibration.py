"""Calibration: temperature scaling fitted on a dev run, ECE/Brier/NLL, the calibrate verb end to end."""
import json

import numpy as np
import pytest

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
