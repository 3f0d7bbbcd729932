"""Modality fusion: fusers, the learned gate, missing modalities, and the one-command ablation."""
import json

from helpers import MELD_DIR, requires_meld, run_cli, varied_inputs

from mllm_mer.config import MediaConfig, ModelConfig, PromptConfig, StrategyConfig
from mllm_mer.pipeline import predict
from mllm_mer.pipeline.resolve import resolve_prompt, resolve_strategy

LABELS = ("joy", "anger", "surprise", "sadness")


# -- pure logic ---------------------------------------------------------------------------------


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
        sample, experts = by_id[p.sample_id], p.extras["fusion"]["experts"]
        assert "joint" in experts and abs(sum(p.tasks["emotion"].probabilities.values()) - 1) < 1e-6
        has_video = bool(sample.video or sample.frames or sample.image)
        has_audio = bool(sample.audio or sample.video == str(tmp_path / "sound.mp4"))
        assert ("video" in experts) == (has_video and len(experts) > 1)
        assert ("audio" in experts) == has_audio
        if not has_audio:
            assert any("missing experts" in n and "audio" in n for n in p.notes)


def test_fusion_with_samples_is_refused_in_one_line_before_the_model_loads(tiny_model, tmp_path):
    """Fusion scores label distributions, which are deterministic: --samples N has nothing to draw and vote."""
    refused = run_cli("predict", "--model", tiny_model, "--strategy", "fusion", "--samples", 5, "--temperature", 0.7,
                      "--transcript", "Oh my God!", check=False, timeout=900)
    assert refused.returncode == 2 and refused.stdout == ""
    [line] = refused.stderr.strip().splitlines()
    assert "--samples 5" in line and "fusion" in line and "Traceback" not in refused.stderr
    # the strategies that can draw still take it: the single strategy votes 3 draws
    voted = run_cli("predict", "--model", tiny_model, "--samples", 3, "--temperature", 0.7, "--transcript",
                    "Oh my God!", check=False, timeout=900)
    assert voted.returncode == 0, voted.stderr[-2000:]
    assert json.loads(voted.stdout)["extras"]["consistency"]["n"] == 3


def test_learned_gate_on_the_colour_wording_task_with_the_trained_adapter(tiny_model, colour_task, colour_adapter,
                                                                           tmp_path):
    labels = colour_task / "labels.yaml"
    data = ["--dataset", "manifest", "--data-dir", colour_task / "manifest.jsonl", "--labels", labels,
            "--dataset-options", f"{{labels: {labels}, task: emotion}}",
            "--model", tiny_model, "--adapter", colour_adapter / "adapter", "--strategy", "fusion"]
    dev = run_cli("evaluate", *data, "--split", "dev", "--out", tmp_path / "dev", check=False, timeout=900)
    assert dev.returncode == 0, dev.stderr[-3000:]
    fitted = run_cli("fit-fusion", tmp_path / "dev", "--out", tmp_path / "fusion.json", check=False, timeout=900)
    assert fitted.returncode == 0, fitted.stderr[-3000:]
    assert "fuser: gate" in fitted.stdout
    test = run_cli("evaluate", *data, "--split", "test", "--fuser", "gate", "--fusion", tmp_path / "fusion.json",
                   "--out", tmp_path / "test", check=False, timeout=900)
    assert test.returncode == 0, test.stderr[-3000:]
    metrics = json.loads((tmp_path / "test" / "metrics.json").read_text())
    assert metrics["tasks"]["emotion"]["accuracy"] >= 0.9
    records = [json.loads(x) for x in (tmp_path / "test" / "predictions.jsonl").read_text().splitlines()]

    def expert_accuracy(name):
        hits = [max((p := r["prediction"]["extras"]["fusion"]["experts"][name]["emotion"]), key=p.get)
                == r["gold"]["emotion"] for r in records]
        return sum(hits) / len(hits)

    assert expert_accuracy("text") <= 0.65 and expert_accuracy("video") <= 0.65  # each modality alone: about half
    # The one-command ablation over the same split prints and writes the table.
    ablation = run_cli("ablate", *data, "--split", "test", "--fusion", tmp_path / "fusion.json", "--out",
                       tmp_path / "ablate", check=False, timeout=900)
    assert ablation.returncode == 0, ablation.stderr[-3000:]
    for row in ("expert: text |", "expert: video |", "expert: joint |", "fuser: mean |", "fuser: gate |"):
        assert row in ablation.stdout
    assert (tmp_path / "ablate" / "ablation.png").stat().st_size > 0
    assert "## Missing modalities" in (tmp_path / "ablate" / "ablation.md").read_text()
    refused = run_cli("evaluate", "--dataset", "meld", "--data-dir", MELD_DIR, "--split", "dev", "--limit", "2",
                      "--model", tiny_model, "--strategy", "fusion", "--fuser", "gate", "--fusion",
                      tmp_path / "fusion.json", "--out", tmp_path / "wrong", check=False, timeout=900)
    assert refused.returncode == 2 and "fitted for label set" in refused.stderr


@requires_meld
def test_ablate_decodes_each_sample_once(tiny_model, hf_backend, tmp_path, monkeypatch):
    import mllm_mer.stages.prepare as pipeline
    from mllm_mer.config import EvaluateConfig, build
    from mllm_mer.evaluation.records import run_records
    from mllm_mer.evaluation.runner import run_evaluation
    from mllm_mer.strategies.fusion.ablation import write_ablation

    loads = []
    real = pipeline.load_media
    monkeypatch.setattr(pipeline, "load_media", lambda sample, *a, **k: loads.append(sample.id) or real(sample, *a,
                                                                                                       **k))
    cfg = build(EvaluateConfig, dataset="meld", data_dir=str(MELD_DIR), split="test", limit=24,
                model=str(tiny_model), template="label_only", modalities=["text"], strategy="fusion", experts="all",
                out=str(tmp_path / "run"))
    run_evaluation(cfg, backend=hf_backend, progress=False)
    assert sorted(loads) == sorted(set(loads)) and len(loads) == 24
    table = write_ablation(tmp_path / "run", *run_records(tmp_path / "run"))
    assert "expert: joint" in table
    assert (tmp_path / "run" / "ablation.md").is_file() and (tmp_path / "run" / "ablation.png").is_file()
