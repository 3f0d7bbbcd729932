"""Fusion's pure logic: fusers on hand-made distributions, the experts of a sample, the learned gate."""
import random

import pytest

from mllm_mer.core.labels import load_label_scheme
from mllm_mer.strategies.fusion import expert_subsets, fit_gate, fuse, load_gate

LABELS = ("joy", "anger", "surprise", "sadness")


def _record(colour, weather, gold, rng):
    """Experts that each know one factor: the text expert tells sunny from rainy, the video one red from blue."""
    by_weather = {"sunny": ("joy", "surprise"), "rainy": ("anger", "sadness")}[weather]
    by_colour = {"red": ("joy", "anger"), "blue": ("surprise", "sadness")}[colour]

    def spread(favoured):
        raw = {label: (1.0 if label in favoured else 0.1) * rng.uniform(0.8, 1.2) for label in LABELS}
        total = sum(raw.values())
        return {k: v / total for k, v in raw.items()}

    return {"gold": {"emotion": gold}, "prediction": {"ok": True, "experts": {
        "text": {"emotion": spread(by_weather)}, "video": {"emotion": spread(by_colour)}}}}


def _labels(tmp_path):
    from mllm_mer.synthetic.tasks import LABELS_YAML

    path = tmp_path / "labels.yaml"
    path.write_text(LABELS_YAML)
    return path


def test_fusers_on_hand_made_distributions():
    sure = {"joy": 0.85, "anger": 0.05, "surprise": 0.05, "sadness": 0.05}
    flat = {"joy": 0.1, "anger": 0.4, "surprise": 0.25, "sadness": 0.25}
    mean = fuse({"text": sure, "video": flat}, "mean", LABELS)
    assert mean["joy"] == pytest.approx(0.475) and sum(mean.values()) == pytest.approx(1)
    product = fuse({"text": sure, "video": flat}, "product", LABELS)
    assert product["joy"] == pytest.approx(0.085 / (0.085 + 0.02 + 0.0125 + 0.0125))
    entropy = fuse({"text": sure, "video": flat}, "entropy", LABELS)
    assert entropy["joy"] > mean["joy"]  # the confident expert weighs more than half
    assert fuse({"text": sure}, "entropy", LABELS) == pytest.approx(sure)  # one expert: itself
    with pytest.raises(ValueError, match="needs a fitted gate"):
        fuse({"text": sure}, "gate", LABELS)


def test_experts_are_the_present_modalities_and_the_joint_prompt():
    assert set(expert_subsets(["text", "video"])) == {"text", "video", "joint"}
    assert set(expert_subsets(["text", "video", "audio"], every_subset=True)) == {
        "text", "video", "audio", "text+video", "text+audio", "video+audio", "joint"}
    assert set(expert_subsets(["text"])) == {"joint"}  # one modality: the joint prompt is that expert


def test_the_gate_learns_to_combine_experts_that_each_know_half(tmp_path):
    from mllm_mer.synthetic.tasks import COMBINATIONS

    scheme = load_label_scheme(str(_labels(tmp_path)))
    rng = random.Random(0)
    records = [_record(c, w, label, rng) for _ in range(30) for (c, w), label in COMBINATIONS.items()]
    gate = fit_gate(records, scheme)
    test = [_record(c, w, label, rng) for _ in range(10) for (c, w), label in COMBINATIONS.items()]

    def accuracy(pick):
        return sum(pick(r) == r["gold"]["emotion"] for r in test) / len(test)

    experts = lambda r: {n: e["emotion"] for n, e in r["prediction"]["experts"].items()}  # noqa: E731
    gated = accuracy(lambda r: max((p := gate.tasks["emotion"].predict(experts(r))), key=p.get))
    text_only = accuracy(lambda r: max((p := experts(r)["text"]), key=p.get))
    assert gated >= 0.9 and text_only <= 0.65
    path = gate.save(tmp_path / "fusion.json")
    assert load_gate(path).tasks["emotion"].predict(experts(test[0])) == pytest.approx(
        gate.tasks["emotion"].predict(experts(test[0])))
    # A missing expert is an input the gate was trained on (modality dropout), not a crash.
    alone = gate.tasks["emotion"].predict({"video": experts(test[0])["video"]})
    assert sum(alone.values()) == pytest.approx(1)
    with pytest.raises(ValueError, match="fitted for label set"):
        load_gate(path).check(load_label_scheme("meld"), str(path))
