"""`evaluate --faithfulness` on the synthetic colour x wording task: the trained adapter's labels depend on the
frames and the wording, and not on a hum that carries nothing."""
import json

from helpers import REPO, recipe_overrides, run_cli

from mllm_mer.synthetic.media import write_wav


def with_a_hum(task, out):
    """The colour task where half the train/dev rows and every test row also bring a 1 s hum: a modality the label
    does not depend on, absent often enough in training that removing it gives a prompt the adapter knows."""
    out.mkdir()
    (out / "labels.yaml").write_text((task / "labels.yaml").read_text())
    hum = write_wav(out / "hum.wav", seconds=1.0, tone_hz=180.0)
    rows = [json.loads(line) for line in (task / "manifest.jsonl").read_text().splitlines()]
    rows = [{**r, "video": str(task / r["video"]), **({"audio": str(hum)} if r["split"] == "test" or i % 2 else {})}
            for i, r in enumerate(rows)]
    (out / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


def test_removing_frames_or_wording_moves_half_the_labels_and_removing_a_hum_moves_none(
        tiny_model, colour_task, colour_adapter, tmp_path):
    task = with_a_hum(colour_task, tmp_path / "task")
    # The session's colour adapter, 16 steps more on the task with the hum, so that the hum's line is familiar.
    run_cli("finetune", "--config", "finetune/configs/tiny_lora.yaml",
            *recipe_overrides(tiny_model, task, tmp_path / "lora", f"init_adapter={colour_adapter / 'adapter'}",
                              "max_steps=16", "lr_scheduler=constant", "modalities=[text,video,audio]"),
            timeout=900, cwd=REPO)
    labels, out = task / "labels.yaml", tmp_path / "run"
    done = run_cli("evaluate", "--model", tiny_model, "--adapter", tmp_path / "lora" / "adapter", "--dataset",
                   "manifest", "--data-dir", task / "manifest.jsonl", "--labels", labels, "--dataset-options",
                   f"{{labels: {labels}, task: emotion}}", "--split", "test", "--modalities", "text,video,audio",
                   "--faithfulness", "--out", out, timeout=900)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["tasks"]["emotion"]["accuracy"] >= 0.9
    found = metrics["faithfulness"]
    by = found["by_modality"]
    assert {m: r["n"] for m, r in by.items()} == {"text": 64, "video": 64, "audio": 64}
    # Frames alone or wording alone are worth 50%: a model that uses both must lose about half its labels
    # without either; the hum decides nothing, so removing it moves (almost) nothing.
    for needed in ("video", "text"):
        assert by[needed]["label_moved"] >= 0.35 and by[needed]["mean_probability_drop"] >= 0.25, by
    assert by["audio"]["label_moved"] <= 0.05 and abs(by["audio"]["mean_probability_drop"]) <= 0.05, by
    # Label-only answers cite nothing; the entry says what the label tested is and that no judge is involved.
    assert found["explained"] == 0 and found["cited"] == {"n": 0} and found["judge"] is None
    assert found["answer_agrees"] >= 0.9
    report = (out / "report.md").read_text()
    assert f"| video | 64 | {by['video']['label_moved']:.1%} |" in report and "with no judge" in report
    assert f"without video {by['video']['label_moved']:.0%}" in done.stdout
