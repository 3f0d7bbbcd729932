"""`evaluate`: outputs, metrics against scikit-learn, failures, crash safety, ablation, compare."""
import csv
import json
import os
import signal
import subprocess
import time

import pytest
from helpers import MELD_DIR, assert_tree_gone, cli_command, requires_meld, run_cli
from sklearn.metrics import accuracy_score, f1_score

from mllm_mer.config import EvaluateConfig, build
from mllm_mer.evaluation.runner import read_predictions, run_evaluation
from mllm_mer.stages.metrics import FAILED
from mllm_mer.synthetic.media import write_clip


def make_meld_split(root, n=10, corrupt=1, empty=1):
    """A MELD-layout dev split: real CSV rows, generated clips, a corrupt clip, an empty transcript."""
    with open(MELD_DIR / "dev_sent_emo.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))[:n]
    clips = root / "dev_splits_complete"
    clips.mkdir(parents=True)
    for i, row in enumerate(rows):
        stem = f"dia{row['Dialogue_ID']}_utt{row['Utterance_ID']}"
        if i < corrupt:
            (clips / f"{stem}.mp4").write_bytes(os.urandom(3000))
        elif i < corrupt + empty:
            row["Utterance"] = ""  # and no clip: nothing to classify
        else:
            write_clip(clips / f"{stem}.mp4", seconds=1.0, fps=8, colour=lambda k, i=i: (30 * i % 256, 90, 160))
    with open(root / "dev_sent_emo.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root, [f"dia{r['Dialogue_ID']}_utt{r['Utterance_ID']}" for r in rows]


@pytest.mark.vllm
@requires_meld
def test_evaluate_meld_clips_on_vllm_writes_all_outputs(tmp_path, vllm_backend):
    data_dir, ids = make_meld_split(tmp_path / "meld")
    cfg = build(EvaluateConfig, dataset="meld", data_dir=str(data_dir), split="dev", out=str(tmp_path / "run"),
                batch_size=4, max_frames=4, model=vllm_backend.config.model.model, backend="vllm")
    metrics = run_evaluation(cfg, backend=vllm_backend, progress=False)
    out = tmp_path / "run"
    for name in ("predictions.jsonl", "metrics.json", "report.md", "confusion.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0
    records = read_predictions(out / "predictions.jsonl")
    assert sorted(records) == sorted(ids)
    failed = {r["id"]: r["prediction"]["error"] for r in records.values() if not r["prediction"]["ok"]}
    assert set(failed) == {ids[0], ids[1]}
    assert "not a readable media file" in failed[ids[0]] and "no usable input" in failed[ids[1]]
    assert metrics["n_failed"] == 2 and {f["id"] for f in metrics["failures"]} == set(failed)
    for task in ("emotion", "sentiment"):
        gold = [records[i]["gold"][task] for i in ids]
        pred = [records[i]["prediction"]["tasks"].get(task, {}).get("label") or FAILED for i in ids]
        assert metrics["tasks"][task]["accuracy"] == pytest.approx(accuracy_score(gold, pred))
        assert metrics["tasks"][task]["macro_f1"] == pytest.approx(
            f1_score(gold, pred, labels=sorted(set(gold)), average="macro", zero_division=0))
    report = (out / "report.md").read_text()
    assert "| emotion |" in report and ids[0] in report


@pytest.mark.vllm
@requires_meld
@pytest.mark.parametrize("mode,strategy,options", [
    ("generate", "single", {}), ("score", "single", {}), ("score", "fusion", {}),
    ("generate", "agent", {"max_steps": 2, "n": 6}),
    ("generate", "single", {"reasoning": "before", "max_reasoning_tokens": 8, "compare_orders": True, "n": 4}),
    ("generate", "single", {"samples": 2, "temperature": 0.9, "max_new_tokens": 48, "n": 6}),
    ("generate", "agent", {"samples": 2, "temperature": 0.9, "reasoning": "before", "max_reasoning_tokens": 8,
                           "max_steps": 2, "max_new_tokens": 48, "n": 6}),
], ids=["generate", "score", "fusion", "agent", "reasoning", "self-consistency", "agent-drawn-reasoning"])
def test_continuous_submission_agrees_with_batched_on_vllm(tmp_path, vllm_backend, mode, strategy, options):
    """Same answers whether each sample's requests reach the engine as its flow asks for them or 4 samples at a
    time in lockstep; label probabilities are scored while other requests are still running (generate), each
    sample's scorings go out task after task as the one before is read (score: emotion, then sentiment after
    it; fusion: every expert's chain at once, fused when all are read), an agent's next step goes out when its
    last one is read, a reasoned answer follows its own reasoning, and a sample's draws run side by side
    (seeded per draw, so sampling is the same either way)."""
    options = dict(options)
    data_dir, ids = make_meld_split(tmp_path / "meld", n=options.pop("n", 12))  # the slower strategies: fewer
    runs, streamed = {}, []
    for submission in ("continuous", "batched"):
        cfg = build(EvaluateConfig, dataset="meld", data_dir=str(data_dir), split="dev", probabilities=True,
                    out=str(tmp_path / submission), batch_size=4, max_frames=4, submission=submission,
                    model=vllm_backend.config.model.model, backend="vllm", mode=mode, strategy=strategy, **options)
        stream = vllm_backend.stream
        vllm_backend.stream = lambda adapter=None: streamed.append(submission) or stream(adapter)  # noqa: B023
        try:
            run_evaluation(cfg, backend=vllm_backend, progress=False)
        finally:
            del vllm_backend.stream  # the class's own again
        runs[submission] = read_predictions(tmp_path / submission / "predictions.jsonl")
    assert streamed == ["continuous"]  # the continuous run went through the engine's stream, the batched not
    assert sorted(runs["continuous"]) == sorted(runs["batched"]) == sorted(ids)
    assert sum(r["prediction"]["ok"] for r in runs["continuous"].values()) == len(ids) - 2
    for i in ids:
        got, want = runs["continuous"][i]["prediction"], runs["batched"][i]["prediction"]
        assert (got["ok"], got["raw"], got["error_kind"]) == (want["ok"], want["raw"], want["error_kind"])
        for task, tp in want["tasks"].items():
            assert got["tasks"][task]["label"] == tp["label"]
            # float32 log-probabilities shift in the 7th digit with the engine's batch composition
            assert got["tasks"][task]["probabilities"] == pytest.approx(tp["probabilities"], abs=1e-5)
        if strategy == "fusion" and want["ok"]:  # the same experts, each with the same distributions
            experts = want["extras"]["fusion"]["experts"]
            assert got["extras"]["fusion"]["experts"].keys() == experts.keys() and len(experts) >= 2
            for name, tasks in experts.items():
                for task, probabilities in tasks.items():
                    assert got["extras"]["fusion"]["experts"][name][task] == pytest.approx(probabilities, abs=1e-5)
            assert got["notes"] == want["notes"]
        for name in ("agent", "consistency"):  # the same steps (tools, arguments, thoughts), the same draws
            assert got["extras"].get(name) == want["extras"].get(name)
        assert got["reasoning"] == want["reasoning"] and got["notes"] == want["notes"]
        if options.get("compare_orders") and want["ok"]:
            assert got["reasoning"]["order"] == "before" and "label_first" in got["reasoning"]


@pytest.mark.vllm
@pytest.mark.slow
def test_sigkill_mid_continuous_run_on_vllm_then_resume(tmp_path, vllm_backend, tiny_model):
    """The continuous path through the CLI as a user runs it: killed with -9 (nothing it started survives),
    resumed, every row once, and the same greedy answers as an uninterrupted run."""
    import random

    rng = random.Random(5)
    words = ["never", "again", "wow", "fine", "stop", "please", "great", "what", "no", "really"]
    manifest = tmp_path / "rows.jsonl"
    manifest.write_text("".join(json.dumps({"id": f"r{i}", "label": "neutral",
                                            "text": " ".join(rng.choice(words) for _ in range(rng.randint(2, 14)))})
                                + "\n" for i in range(160)))
    common = ["--dataset", "manifest", "--data-dir", str(manifest), "--template", "label_only"]
    reference = tmp_path / "reference"
    run_evaluation(build(EvaluateConfig, model=str(tiny_model), backend="vllm", out=str(reference), dataset="manifest",
                         data_dir=str(manifest), template="label_only"), backend=vllm_backend, progress=False)

    crashed = tmp_path / "crashed"
    command = cli_command("evaluate", "--model", tiny_model, "--backend", "vllm", "--enforce-eager", "--max-model-len",
                          "4096", "--dtype", "float32", "--out", crashed, *common)
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    predictions = crashed / "predictions.jsonl"
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline and proc.poll() is None:
        if predictions.is_file() and predictions.read_text().count("\n") >= 2:
            break
        time.sleep(0.01)
    assert_tree_gone(proc, signal.SIGKILL)  # the watchdog takes the engine with it
    partial = predictions.read_text().count("\n")
    assert 0 < partial < 160, "the kill should land mid-run"
    # Resumed with the same settings on the session's engine (a second CLI engine start would add a minute;
    # the CLI's own resume is tested on transformers below).
    run_evaluation(build(EvaluateConfig, model=str(tiny_model), backend="vllm", out=str(crashed), dataset="manifest",
                         data_dir=str(manifest), template="label_only"), backend=vllm_backend, progress=False)

    lines = [json.loads(x) for x in predictions.read_text().splitlines()]
    assert sorted(r["id"] for r in lines) == sorted(f"r{i}" for i in range(160))  # every row once
    expected = read_predictions(reference / "predictions.jsonl")
    assert {r["id"]: r["prediction"] for r in lines} == {k: v["prediction"] for k, v in expected.items()}


def _evaluate_cmd(data_dir, out, *extra):
    return cli_command("evaluate", "--dataset", "meld", "--data-dir", data_dir, "--split", "dev", "--out", out,
                       "--batch-size", "2", "--template", "label_only", "--max-frames", "2", *extra)


@pytest.fixture(scope="module")
def cli_split(tmp_path_factory, tiny_model):
    root = tmp_path_factory.mktemp("evalcli")
    data_dir, ids = make_meld_split(root / "meld", n=12)
    return data_dir, ids, ["--model", str(tiny_model)]


@requires_meld
def test_sigkill_mid_run_then_resume_equals_an_uninterrupted_run(tmp_path, cli_split):
    data_dir, ids, model = cli_split
    reference = tmp_path / "reference"
    subprocess.run(_evaluate_cmd(data_dir, reference, *model), check=True, capture_output=True, timeout=600)

    crashed = tmp_path / "crashed"
    proc = subprocess.Popen(_evaluate_cmd(data_dir, crashed, *model), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    predictions = crashed / "predictions.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if predictions.is_file() and 2 <= predictions.read_text().count("\n") < len(ids):
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = predictions.read_text().count("\n")
    assert 0 < partial < len(ids), "the kill should land mid-run"
    resumed = subprocess.run(_evaluate_cmd(data_dir, crashed, *model), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr

    lines = [json.loads(x) for x in predictions.read_text().splitlines()]
    assert sorted(r["id"] for r in lines) == sorted(ids)  # exactly one line per sample
    expected = read_predictions(reference / "predictions.jsonl")
    assert {r["id"]: r["prediction"] for r in lines} == {k: v["prediction"] for k, v in expected.items()}
    assert json.loads((crashed / "metrics.json").read_text())["tasks"] == \
        json.loads((reference / "metrics.json").read_text())["tasks"]


@requires_meld
def test_a_torn_last_line_is_dropped_and_redone(tmp_path, cli_split):
    data_dir, ids, model = cli_split
    out = tmp_path / "torn"
    subprocess.run(_evaluate_cmd(data_dir, out, *model, "--limit", "4"), check=True, capture_output=True)
    path = out / "predictions.jsonl"
    text = path.read_text()
    path.write_text(text + text.splitlines()[0][:25])  # a write cut off mid-line
    subprocess.run(_evaluate_cmd(data_dir, out, *model, "--limit", "6"), check=True, capture_output=True)
    assert sorted(read_predictions(path)) == sorted(ids[:6])
    assert all(line.startswith("{") and line.endswith("}") for line in path.read_text().splitlines())
    # a --limit run says it is partial, and run.json says who ran what, when
    assert f"partial: 6 of {len(ids)}" in (out / "report.md").read_text()
    run = json.loads((out / "run.json").read_text())
    # the backend is at its default (transformers), so it is left out of the identity
    assert "backend" not in run["fingerprint"] and run["fingerprint"]["split"] == "dev"
    provenance = run["provenance"]
    assert provenance["package_version"] != "unknown" and provenance["started"] and provenance["command"]
    assert provenance["config"]["limit"] == 4 and provenance["config"]["max_new_tokens"] > 0
    assert len(run["resumed"]) == 1
    inputs = [r["inputs"] for r in read_predictions(path).values() if r["prediction"]["ok"]]
    assert inputs and all("text" in i["modalities"] and i["n_frames"] <= 2 for i in inputs)


@requires_meld
def test_resuming_with_other_settings_is_refused(tmp_path, cli_split):
    data_dir, ids, model = cli_split
    out = tmp_path / "run"
    subprocess.run(_evaluate_cmd(data_dir, out, *model, "--limit", "3"), check=True, capture_output=True)
    proc = subprocess.run(_evaluate_cmd(data_dir, out, *model, "--limit", "3", "--mode", "score"),
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "other settings (prompt)" in proc.stderr


@requires_meld
def test_a_rerun_answers_again_the_rows_a_bad_setting_failed(tmp_path, cli_split):
    """--max-new-tokens 3 cuts every answer (failures of their own kind, `cut`); the rerun with a workable value
    answers those rows again, replaces their failures (each id once in the file) and says so; a corrupt clip
    stays failed."""
    data_dir, ids, model = cli_split
    out = tmp_path / "run"
    subprocess.run(_evaluate_cmd(data_dir, out, *model, "--limit", "4", "--max-new-tokens", "3"),
                   capture_output=True, text=True, timeout=600)
    before = read_predictions(out / "predictions.jsonl")
    cut = sorted(i for i, r in before.items() if r["prediction"].get("error_kind") == "cut")
    assert len(cut) == 2, {i: r["prediction"].get("error") for i, r in before.items()}
    again = subprocess.run(_evaluate_cmd(data_dir, out, *model, "--limit", "4", "--max-new-tokens", "1024"),
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    lines = [json.loads(line)["id"] for line in (out / "predictions.jsonl").read_text().splitlines()]
    after = read_predictions(out / "predictions.jsonl")
    assert sorted(lines) == sorted(set(lines)) == sorted(before)
    assert all(after[i]["prediction"]["ok"] for i in cut)
    assert after[ids[0]]["prediction"]["error_kind"] == "media"  # the file is as broken as it was
    assert "answered again: 2 that had failed (cut)" in again.stdout
    assert json.loads((out / "metrics.json").read_text())["retried"] == {"cut": 2}


@requires_meld
def test_a_run_where_every_sample_failed_exits_non_zero(tmp_path, cli_split):
    data_dir, ids, model = cli_split  # the first two: a corrupt clip, an empty transcript
    proc = subprocess.run(_evaluate_cmd(data_dir, tmp_path / "run", *model, "--limit", "2"), capture_output=True,
                          text=True)
    assert proc.returncode == 3 and "every sample failed" in proc.stderr
    assert "2 samples, 2 failed (media 1, no evidence 1)" in proc.stdout
    assert "2 samples, 2 failed" in (tmp_path / "run" / "report.md").read_text()


@requires_meld
def test_modality_ablation_and_compare(tmp_path, cli_split):
    data_dir, ids, model = cli_split
    runs = []
    for modalities in ("text", "video", "text,video,audio"):
        out = tmp_path / modalities.replace(",", "+")
        proc = subprocess.run(_evaluate_cmd(data_dir, out, *model, "--limit", "4", "--modalities", modalities),
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert "emotion: accuracy" in proc.stdout
        runs.append(out)
    video_only = read_predictions(runs[1] / "predictions.jsonl")
    # the sample with an empty transcript and no clip has nothing in any ablation; text-less runs also
    # lose the corrupt clip, and the clips carry the video-only evidence
    assert not video_only[ids[0]]["prediction"]["ok"] and video_only[ids[2]]["prediction"]["ok"]
    table = run_cli("compare", *map(str, runs), timeout=None).stdout
    assert table.splitlines()[0].startswith("| run | task | modalities | accuracy")
    assert "| text | emotion | text |" in table and "| video | sentiment | video |" in table
    assert len(table.split("\n\n")[0].splitlines()) == 2 + 3 * 2  # then the intervals' note and paired tests
    differ = table.split("## How the runs differ", 1)[1].split("##", 1)[0]  # read from each run's run.json
    assert "| modalities | text | video | text,video,audio |" in differ and "| model |" not in differ


@requires_meld
def test_report_throughput_agrees_with_the_progress_bar(tmp_path, tiny_model):
    """What report.md says of speed is what the user watched: within 20% of tqdm's final rate (40 MELD rows)."""
    import re

    out = tmp_path / "run"
    done = run_cli("evaluate", "--model", tiny_model, "--dataset", "meld", "--data-dir", MELD_DIR, "--split", "test",
                   "--limit", "40", "--modalities", "text", "--template", "label_only", "--batch-size", "8", "--out",
                   out, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    bar = done.stderr.replace("\r", "\n")
    assert "40/40" in bar
    rate = re.findall(r"([\d.]+)(sample/s|s/sample)", bar)[-1]
    shown = float(rate[0]) if rate[1] == "sample/s" else 1 / float(rate[0])
    reported = json.loads((out / "metrics.json").read_text())["throughput_samples_per_s"]
    assert abs(reported - shown) <= 0.2 * shown, (reported, shown)
    assert f"{reported:.2f}" in (out / "report.md").read_text()
    # Generate mode without --probabilities: the run says there is no ECE, and which flag adds it.
    absent = "no label probabilities were computed (generate mode), so no ECE, Brier or NLL: add --probabilities"
    assert absent in done.stdout and absent in (out / "report.md").read_text()


def test_a_second_evaluate_over_the_same_clips_opens_no_media_file(tmp_path, hf_backend, monkeypatch):
    """Decoded frames, audio windows and probes come from the disk cache on a rerun (a new process's memory
    cache is empty: cleared here); the answers are the same."""
    from mllm_mer.media import video

    manifest = tmp_path / "clips.jsonl"
    rows = []
    for i in range(3):
        write_clip(tmp_path / f"c{i}.mp4", seconds=1.5, fps=8, colour=lambda k, i=i: (70 * i, 90, 160))
        rows.append({"id": f"c{i}", "video": f"c{i}.mp4", "text": f"clip {i}", "label": "neutral"})
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setenv("MLLM_MER_CACHE", str(tmp_path / "cache"))

    def evaluate(out):
        cfg = build(EvaluateConfig, dataset="manifest", data_dir=str(manifest), out=str(tmp_path / out),
                    model=hf_backend.config.model.model, template="label_only", max_frames=2)
        run_evaluation(cfg, backend=hf_backend, progress=False)
        return {k: v["prediction"] for k, v in read_predictions(tmp_path / out / "predictions.jsonl").items()}

    first = evaluate("first")
    video.decode_window.cache_clear()
    opened = []
    real_open = video.av.open
    monkeypatch.setattr(video.av, "open", lambda *a, **k: opened.append(a[0]) or real_open(*a, **k))
    second = evaluate("second")
    assert opened == []
    assert second == first and all(p["ok"] for p in second.values())


# A run.json as the layout before the package moved to stages wrote it (same command as below).
def _fingerprint_before_the_move(model: str, data_dir: str) -> dict:
    return {"dataset": "meld", "data_dir": data_dir, "split": "test",
            "data": {"dataset": "meld", "data_dir": data_dir, "id_col": "id", "text_col": "text", "label_col": "label",
                     "video_col": "video", "speaker_col": "speaker", "dialogue_col": "dialogue", "task": "emotion"},
            "labels": "meld", "tasks": ["emotion", "sentiment"],
            "prompt": {"template": "label_only", "modalities": ["text"], "mode": "generate"},
            "media": {"max_frames": 8, "fps": None, "max_pixels": 200704, "keyframe_snap": 0.25, "vocal_cues": True,
                      "asr_model": None, "allowed_roots": []},
            "model": model, "backend": "transformers", "adapters": {}, "probabilities": False, "temperatures": {},
            "strategy": {"strategy": "single", "samples": 2, "temperature": 0.7}}


@requires_meld
def test_a_run_started_before_the_move_resumes_with_no_row_recomputed(tiny_model, tmp_path):
    out = tmp_path / "old-run"
    out.mkdir()
    data_dir = str(MELD_DIR.resolve())
    (out / "run.json").write_text(json.dumps({"fingerprint": _fingerprint_before_the_move(str(tiny_model), data_dir),
                                              "provenance": {}}))
    earlier = [{"id": f"dia0_utt{i}", "gold": {"emotion": "neutral", "sentiment": "neutral"},
                "prediction": {"sample_id": f"dia0_utt{i}", "tasks": {"emotion": {"label": "fear"},
                                                                       "sentiment": {"label": "negative"}},
                               "raw": "written before the move", "ok": True}} for i in range(3)]
    (out / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in earlier))
    done = run_cli("evaluate", "--model", tiny_model, "--dataset", "meld", "--data-dir", data_dir, "--split", "test",
                   "--limit", "6", "--template", "label_only", "--modalities", "text", "--samples", "2",
                   "--temperature", "0.7", "--out", out, "--dtype", "float32", check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows[:3]] == ["dia0_utt0", "dia0_utt1", "dia0_utt2"]
    assert all(r["prediction"]["raw"] == "written before the move" for r in rows[:3])  # not recomputed
    assert sorted(r["id"] for r in rows) == sorted({r["id"] for r in rows}) and len(rows) == 6
    assert all(r["prediction"]["extras"]["consistency"]["n"] == 2 for r in rows[3:])  # the rest answered as asked
    saved = json.loads((out / "run.json").read_text())
    assert saved["fingerprint"] == _fingerprint_before_the_move(str(tiny_model), data_dir) and saved["resumed"]
