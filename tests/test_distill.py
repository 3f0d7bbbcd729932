"""Rationale distillation: a teacher answers a split, a fresh student learns from its answers alone."""
import json
import signal
import subprocess
import sys
import time

import pytest

from mllm_mer.config import DistillConfig, build
from mllm_mer.training.distill import run_distill


def _task_options(task):
    labels = task / "labels.yaml"
    return {"dataset": "manifest", "data_dir": str(task / "manifest.jsonl"),
            "dataset_options": {"labels": str(labels), "task": "emotion"}}


@pytest.mark.vllm
def test_a_student_learns_from_the_teachers_answers_alone(tiny_model, colour_task, colour_adapter, vllm_backend,
                                                          tmp_path):
    vllm_backend.register_adapter("teacher", str(colour_adapter / "adapter"))
    out = tmp_path / "distilled"
    cfg = build(DistillConfig, **_task_options(colour_task), split="train", model=str(tiny_model),
                adapter=[f"teacher={colour_adapter / 'adapter'}"], backend="vllm", template="zero_shot",
                out=str(out))
    summary = run_distill(cfg, backend=vllm_backend, progress=False)
    assert summary["agreement_with_gold"] >= 0.9 and summary["kept"] >= 100
    rows = [json.loads(x) for x in (out / "distilled.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["split"] == "train"]
    assert all(r["source"] in ("teacher", "rationalised") and r["rationale"] and set(r["cues"]) for r in train)
    assert all(r["provenance"]["teacher"] == str(tiny_model) and r["provenance"]["template"] == "zero_shot"
               for r in train)
    assert {r["source"] for r in rows if r["split"] == "dev"} == {"gold"}
    assert "agreement with gold" in (out / "distill.md").read_text()

    student = tmp_path / "student"
    trained = subprocess.run([sys.executable, "-m", "mllm_mer.cli", "finetune", "--config",
                              "finetune/configs/tiny_distilled_lora.yaml", f"model={tiny_model}",
                              f"output_dir={student}", f"data_dir={out}"], capture_output=True, text=True,
                             timeout=900)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert json.loads((student / "dev_metrics.json").read_text())["tasks"]["emotion"]["accuracy"] >= 0.9
    clip = train[0]
    answer = subprocess.run([sys.executable, "-m", "mllm_mer.cli", "predict", "--model", str(tiny_model),
                             "--adapter", str(student / "adapter"), "--video", clip["video"], "--transcript",
                             clip["text"], "--max-new-tokens", "1024"], capture_output=True, text=True, timeout=600)
    assert answer.returncode == 0, answer.stderr[-2000:]
    prediction = json.loads(answer.stdout)
    assert prediction["ok"] and prediction["rationale"] and set(prediction["cues"]) == set(train[0]["cues"])


def test_rationalisation_keeps_a_hinted_answer_only_when_it_is_gold(tiny_model, colour_task, hf_backend, tmp_path):
    out = tmp_path / "star"
    cfg = build(DistillConfig, **_task_options(colour_task), split="train", limit=24, model=str(tiny_model),
                template="label_only", out=str(out), dev_split=None)
    summary = run_distill(cfg, backend=hf_backend, progress=False)  # the random model: often wrong
    teacher = {json.loads(x)["id"]: json.loads(x) for x in (out / "teacher" / "predictions.jsonl").read_text()
               .splitlines()}
    wrong = {i for i, r in teacher.items() if r["prediction"]["tasks"]["emotion"]["label"] != r["gold"]["emotion"]}
    asked = {json.loads(x)["id"]: json.loads(x) for x in (out / "rationalised.jsonl").read_text().splitlines()}
    assert set(asked) == wrong and wrong  # exactly the wrong rows were asked again
    rows = {json.loads(x)["id"]: json.loads(x) for x in (out / "distilled.jsonl").read_text().splitlines()}
    kept = {i for i, r in asked.items() if r["prediction"]["tasks"]["emotion"]["label"] == r["gold"]["emotion"]}
    # (the random model rarely follows the hint: the kept path is also checked on made-up records below)
    assert {i for i, r in rows.items() if r["rationalised"]} == kept
    assert all(rows[i]["labels"]["emotion"] == asked[i]["gold"]["emotion"] for i in kept)
    assert not (wrong - kept) & set(rows)  # a hinted answer that is still wrong is dropped
    assert summary["rationalised_asked"] == len(wrong) and summary["rationalised_kept"] == len(kept)


def test_a_hinted_answer_is_kept_exactly_when_it_reaches_gold(meld_spec):
    """The filter's logic on made-up records (pure): wrong teacher rows are replaced by their hinted answer
    only when that answer is the gold label, and dropped otherwise."""
    from mllm_mer.core.types import Prediction, Sample, TaskPrediction
    from mllm_mer.training.distill import _kept_rows

    def answer(sample_id, emotion):
        return Prediction(sample_id, tasks={"emotion": TaskPrediction(emotion), "sentiment": TaskPrediction("neutral")})

    samples = [Sample(id=i, transcript="hi", gold={"emotion": "joy", "sentiment": "neutral"}) for i in "abc"]
    teacher = {"a": {"prediction": answer("a", "joy").to_dict()}, "b": {"prediction": answer("b", "fear").to_dict()},
               "c": {"prediction": answer("c", "fear").to_dict()}}
    hinted = {"b": {"prediction": answer("b", "joy").to_dict(), "kept": True},
              "c": {"prediction": answer("c", "anger").to_dict(), "kept": False}}
    rows, counts = _kept_rows(samples, teacher, hinted, meld_spec, "rationalise", {})
    assert [(r["id"], r["source"], r["labels"]["emotion"]) for r in rows] == [("a", "teacher", "joy"),
                                                                            ("b", "rationalised", "joy")]
    assert counts == {"teacher": 1, "rationalised": 1, "dropped": 1}


def test_the_hint_is_in_the_prompt_only_when_given(meld_spec):
    from mllm_mer.core.types import Sample
    from mllm_mer.prompting import build_prompt

    hinted = build_prompt(Sample(id="h", transcript="Fine.", metadata={"hint": {"emotion": "anger"}}), meld_spec)
    plain = build_prompt(Sample(id="p", transcript="Fine."), meld_spec)
    assert "Hint: the annotated answer is emotion: anger." in hinted.messages[1]["content"][-1]["text"]
    assert "Hint" not in plain.messages[1]["content"][-1]["text"]


def test_killing_distill_mid_run_then_rerunning_finishes_every_row_once(tiny_model, colour_task, tmp_path):
    out = tmp_path / "run"
    options = _task_options(colour_task)
    command = [sys.executable, "-m", "mllm_mer.cli", "distill", "--dataset", "manifest", "--data-dir",
               options["data_dir"], "--dataset-options", json.dumps(options["dataset_options"]), "--split", "train",
               "--limit", "40", "--batch-size", "4", "--model", str(tiny_model), "--template", "label_only",
               "--filter", "all", "--out", str(out)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    predictions = out / "teacher" / "predictions.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and (not predictions.is_file() or predictions.read_text().count("\n") < 8):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 8 <= predictions.read_text().count("\n") < 40  # killed mid-run
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    ids = [json.loads(x)["id"] for x in predictions.read_text().splitlines()]
    assert len(ids) == 40 == len(set(ids))
    rows = [json.loads(x) for x in (out / "distilled.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in rows if r["split"] == "train") == sorted(ids)
