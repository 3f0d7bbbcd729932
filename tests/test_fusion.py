"""Modality fusion: fusers, the learned gate, missing modalities, and the one-command ablation."""
import json
import random
import subprocess
import sys

import pytest
from conftest import MELD_DIR, requires_meld
from helpers import varied_inputs

from mllm_mer.config import MediaConfig, ModelConfig, PromptConfig, StrategyConfig
from mllm_mer.core.labels import load_label_scheme
from mllm_mer.pipeline import predict
from mllm_mer.pipeline.resolve import resolve_prompt, resolve_strategy
from mllm_mer.strategies.fusion import expert_subsets, fit_gate, fuse, load_gate

LABELS = ("joy", "anger", "surprise", "sadness")


# -- pure logic ---------------------------------------------------------------------------------

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


def _labels(tmp_path):
    from mllm_mer.synthetic.tasks import LABELS_YAML

    path = tmp_path / "labels.yaml"
    path.write_text(LABELS_YAML)
    return path


# -- the strategy on the model --------------------------------------------------------------------

def test_fusion_answers_every_sample_of_a_mixed_batch_and_lists_missing_experts(hf_backend, tiny_model, tmp_path):
    samples = varied_inputs(tmp_path)
    setup = resolve_prompt(ModelConfig(model=str(tiny_model)), PromptConfig(labels="meld", template="label_only"),
                           MediaConfig(max_frames=2))
    fusion = resolve_strategy(StrategyConfig(strategy="fusion", fuser="entropy"), setup)
    predictions = predict(hf_backend, samples, setup, strategy=fusion)
    by_id = {s.id: s for s in samples}
    for p in predictions:
        assert p.ok, p.error
        sample = by_id[p.sample_id]
        assert "joint" in p.experts and abs(sum(p.tasks["emotion"].probabilities.values()) - 1) < 1e-6
        has_video = bool(sample.video or sample.frames or sample.image)
        has_audio = bool(sample.audio or sample.video == str(tmp_path / "sound.mp4"))
        assert ("video" in p.experts) == (has_video and len(p.experts) > 1)
        assert ("audio" in p.experts) == has_audio
        if not has_audio:
            assert any("missing experts" in n and "audio" in n for n in p.notes)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "mllm_mer.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=900)


def test_fusion_with_samples_is_refused_in_one_line_before_the_model_loads(tiny_model, tmp_path):
    """Fusion scores label distributions, which are deterministic: --samples N has nothing to draw and vote."""
    refused = _cli("predict", "--model", tiny_model, "--strategy", "fusion", "--samples", 5, "--temperature", 0.7,
                   "--transcript", "Oh my God!")
    assert refused.returncode == 2 and refused.stdout == ""
    [line] = refused.stderr.strip().splitlines()
    assert "--samples 5" in line and "fusion" in line and "Traceback" not in refused.stderr
    # the strategies that can draw still take it: the single strategy votes 3 draws
    voted = _cli("predict", "--model", tiny_model, "--samples", 3, "--temperature", 0.7, "--transcript", "Oh my God!")
    assert voted.returncode == 0, voted.stderr[-2000:]
    assert json.loads(voted.stdout)["consistency"]["n"] == 3


def test_learned_gate_on_the_colour_wording_task_with_the_trained_adapter(tiny_model, colour_task, colour_adapter,
                                                                           tmp_path):
    labels = colour_task / "labels.yaml"
    data = ["--dataset", "manifest", "--data-dir", colour_task / "manifest.jsonl", "--labels", labels,
            "--dataset-options", f"{{labels: {labels}, task: emotion}}",
            "--model", tiny_model, "--adapter", colour_adapter / "adapter", "--strategy", "fusion"]
    dev = _cli("evaluate", *data, "--split", "dev", "--out", tmp_path / "dev")
    assert dev.returncode == 0, dev.stderr[-3000:]
    fitted = _cli("fit-fusion", tmp_path / "dev", "--out", tmp_path / "fusion.json")
    assert fitted.returncode == 0, fitted.stderr[-3000:]
    assert "fuser: gate" in fitted.stdout
    test = _cli("evaluate", *data, "--split", "test", "--fuser", "gate", "--fusion", tmp_path / "fusion.json",
                "--out", tmp_path / "test")
    assert test.returncode == 0, test.stderr[-3000:]
    metrics = json.loads((tmp_path / "test" / "metrics.json").read_text())
    assert metrics["tasks"]["emotion"]["accuracy"] >= 0.9
    records = [json.loads(x) for x in (tmp_path / "test" / "predictions.jsonl").read_text().splitlines()]

    def expert_accuracy(name):
        hits = [max((p := r["prediction"]["experts"][name]["emotion"]), key=p.get) == r["gold"]["emotion"]
                for r in records]
        return sum(hits) / len(hits)

    assert expert_accuracy("text") <= 0.65 and expert_accuracy("video") <= 0.65  # each modality alone: about half
    # The one-command ablation over the same split prints and writes the table.
    ablation = _cli("ablate", *data, "--split", "test", "--fusion", tmp_path / "fusion.json", "--out",
                    tmp_path / "ablate")
    assert ablation.returncode == 0, ablation.stderr[-3000:]
    for row in ("expert: text |", "expert: video |", "expert: joint |", "fuser: mean |", "fuser: gate |"):
        assert row in ablation.stdout
    assert (tmp_path / "ablate" / "ablation.png").stat().st_size > 0
    assert "## Missing modalities" in (tmp_path / "ablate" / "ablation.md").read_text()
    refused = _cli("evaluate", "--dataset", "meld", "--data-dir", MELD_DIR, "--split", "dev", "--limit", "2",
                   "--model", tiny_model, "--strategy", "fusion", "--fuser", "gate", "--fusion",
                   tmp_path / "fusion.json", "--out", tmp_path / "wrong")
    assert refused.returncode == 2 and "fitted for label set" in refused.stderr


@requires_meld
def test_ablate_decodes_each_sample_once(tiny_model, hf_backend, tmp_path, monkeypatch):
    import mllm_mer.stages.prepare as pipeline
    from mllm_mer.config import EvaluateConfig, build
    from mllm_mer.evaluation.report import write_ablation
    from mllm_mer.evaluation.runner import run_evaluation

    loads = []
    real = pipeline.load_media
    monkeypatch.setattr(pipeline, "load_media", lambda sample, *a, **k: loads.append(sample.id) or real(sample, *a,
                                                                                                       **k))
    cfg = build(EvaluateConfig, dataset="meld", data_dir=str(MELD_DIR), split="test", limit=24,
                model=str(tiny_model), template="label_only", modalities=["text"], strategy="fusion", experts="all",
                out=str(tmp_path / "run"))
    run_evaluation(cfg, backend=hf_backend, progress=False)
    assert sorted(loads) == sorted(set(loads)) and len(loads) == 24
    table = write_ablation(tmp_path / "run")
    assert "expert: joint" in table
    assert (tmp_path / "run" / "ablation.md").is_file() and (tmp_path / "run" / "ablation.png").is_file()
