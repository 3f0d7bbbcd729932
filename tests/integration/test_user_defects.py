"""Defects a user meets, through the path where they meet them: the model's answer and its own
probabilities, a corpus with a ragged row, aliases, Ctrl-C, cut answers, misleading messages."""
from __future__ import annotations

import json

import pytest

from mllm_mer.core.types import Prediction, PromptSetup
from mllm_mer.pipeline import predict
from mllm_mer.strategies.consistency import SelfConsistency
from mllm_mer.strategies.single import Single
from tests.helpers import random_samples


def _assert_label_is_most_probable_or_says_why(preds: list[Prediction]) -> None:
    for pred in preds:
        assert pred.ok, (pred.error, pred.raw)
        for task, tp in pred.tasks.items():
            top = max(tp.probabilities, key=tp.probabilities.get)
            assert tp.label == top, (pred.sample_id, task, tp.label, tp.probabilities, pred.notes)


@pytest.mark.parametrize("mode", ["generate", "score"])
@pytest.mark.parametrize("backend_name", ["hf_backend", "vllm_backend"])
def test_the_label_is_the_most_probable_label_of_its_own_distribution(request, backend_name, mode, meld_spec):
    backend = request.getfixturevalue(backend_name)
    preds = predict(backend, random_samples(24, seed=11), PromptSetup(meld_spec, template="label_only", mode=mode))
    _assert_label_is_most_probable_or_says_why(preds)
    if mode == "generate":  # where the text wrote another label, the record says both
        notes = [(tp.label, n) for p in preds for task, tp in p.tasks.items() for n in p.notes
                 if n.startswith(f"{task}: the generated answer wrote")]
        assert all(f"the label is {label!r}" in n for label, n in notes), notes

@pytest.mark.parametrize("strategy", ["agent", "fusion"])
def test_the_agent_and_fusion_answer_the_most_probable_label_of_their_own_distribution(hf_backend, tiny_model,
                                                                                      strategy):
    from mllm_mer.config import MediaConfig, ModelConfig, PromptConfig, StrategyConfig
    from mllm_mer.pipeline.resolve import resolve_prompt, resolve_strategy

    setup = resolve_prompt(ModelConfig(model=str(tiny_model)), PromptConfig(labels="meld", template="label_only"),
                           MediaConfig(max_frames=4))
    chosen = resolve_strategy(StrategyConfig(strategy=strategy, max_steps=2), setup)
    preds = predict(hf_backend, random_samples(8, seed=5), setup, strategy=chosen)
    assert sum(bool(tp.probabilities) for p in preds for tp in p.tasks.values()) >= 8
    _assert_label_is_most_probable_or_says_why(preds)


def test_a_vote_of_sampled_answers_keeps_its_label_and_names_the_most_probable(hf_backend, meld_spec):
    strategy = SelfConsistency(Single(), draws=3, temperature=1.5)
    preds = predict(hf_backend, random_samples(12, seed=5), PromptSetup(meld_spec, template="label_only"),
                    strategy=strategy)
    assert all(p.ok for p in preds)
    for pred in preds:
        for task, tp in pred.tasks.items():
            top = max(tp.probabilities, key=tp.probabilities.get)
            if tp.label != top:  # sampled: both are in the record, and why
                assert pred.extras["consistency"]["most_probable"][task] == top
                assert any("vote of sampled answers" in n and repr(top) in n for n in pred.notes), pred.notes


# -- a corpus as released: one ragged row, aliases ------------------------------------------------------------

def _pipe_corpus(path, rows: int, ragged_at: int, labels=("joy", "happy", "excited", "frustrated")):
    """A pipe-delimited corpus whose data row `ragged_at` has a '|' inside its unquoted text (one field more)."""
    lines = ["id|text|label"]
    for i in range(rows):
        text = "well | fine" if i == ragged_at else f"you did what {i}"
        lines.append(f"u{i}|{text}|{labels[i % len(labels)]}")
    path.write_text("\n".join(lines) + "\n")
    return path


MANIFEST = ("--dataset", "manifest", "--delimiter", "|", "--id-col", "id", "--text-col", "text", "--label-col", "label",
            "--labels", "meld")


def test_inspect_lists_a_ragged_row_by_its_line_and_every_alias_applied(tmp_path):
    from helpers import run_cli

    corpus = _pipe_corpus(tmp_path / "corpus.txt", 300, ragged_at=198)
    proc = run_cli("inspect", "--data-dir", corpus, *MANIFEST, "--show", "0")
    assert "corpus.txt: 300 samples" in proc.stdout
    assert f"{corpus}:200: 4 fields where the header names 3" in proc.stdout
    assert "unreadable rows: 1" in proc.stdout
    # 'happy' is an alias of joy; 'excited' and 'frustrated' mean other things in other corpora: outside the set
    assert "gold labels read through aliases of 'meld': happy as joy 75" in proc.stdout, proc.stdout
    assert "outside 'meld': frustrated 75, excited 74" in proc.stdout, proc.stdout


def test_a_wrong_delimiter_is_still_refused_at_once(tmp_path):
    from helpers import run_cli

    corpus = tmp_path / "corpus.csv"  # commas in most texts: the file is not comma-delimited as it stands
    corpus.write_text("id,text,label\n" + "".join(f"u{i},{'oh, no' if i % 3 else 'fine'},joy\n" for i in range(12)))
    proc = run_cli("inspect", "--data-dir", corpus, "--dataset", "manifest", "--id-col", "id", "--labels", "meld",
                   check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{corpus}:3: 4 fields where the header names 3 (8 of 12 rows; is --delimiter right?)" in proc.stderr, \
        proc.stderr


def test_evaluate_answers_every_row_but_the_ragged_one_and_reports_aliases(tiny_model, tmp_path):
    from helpers import run_cli

    corpus = _pipe_corpus(tmp_path / "corpus.txt", 8, ragged_at=5)
    out = tmp_path / "run"
    proc = run_cli("evaluate", "--model", tiny_model, "--data-dir", corpus, *MANIFEST, "--template", "label_only",
                   "--modalities", "text", "--out", out, "--max-new-tokens", "256")
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    failed = [r for r in records if not r["prediction"]["ok"]]
    assert len(records) == 8 and [r["id"] for r in failed] == ["corpus.txt:7"]
    assert failed[0]["prediction"]["error_kind"] == "row" and ":7: 4 fields" in failed[0]["prediction"]["error"]
    summary = proc.stdout + proc.stderr
    assert "1 failed (row 1)" in summary and "gold labels read through aliases: happy as joy 1" in summary, summary
    report = (out / "report.md").read_text()
    assert "gold labels read through aliases: happy as joy 1" in report, report


# -- an answer cut by the token limit ----------------------------------------------------------------------------

def test_an_answer_cut_by_max_new_tokens_says_so_and_keeps_complete_labels(tiny_model):
    from helpers import run_cli

    args = ("predict", "--model", tiny_model, "--transcript", "You did WHAT?", "--labels", "meld")
    cut = json.loads(run_cli(*args, "--max-new-tokens", "3", check=False).stdout)
    assert not cut["ok"] and cut["error_kind"] == "cut"
    assert cut["error"].startswith("cut at --max-new-tokens 3; raise it"), cut["error"]
    # A limit that falls inside the rationale: the labels are complete and taken, with a note. (The first of
    # these limits does on this model; the others keep the test from hanging on one tokenisation.)
    for limit in (24, 32, 48):
        labels_only = json.loads(run_cli(*args, "--max-new-tokens", limit, check=False).stdout)
        if labels_only["ok"]:
            break
    assert labels_only["ok"], labels_only
    assert any(f"cut at --max-new-tokens {limit}" in n for n in labels_only["notes"]), labels_only["notes"]
    assert labels_only["tasks"]["sentiment"]["label"] in {"neutral", "positive", "negative"}


# -- Ctrl-C ------------------------------------------------------------------------------------------------------

STOP_S = 300  # a bound on shutting down after Ctrl-C, generous for a loaded machine (it takes seconds alone)


def _as_in_a_terminal() -> None:
    """Ctrl-C's default in the child, as a terminal gives it: a suite started in the background (`pytest &`
    without job control) passes SIGINT down ignored, and Python keeps an ignored SIGINT ignored."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)

def test_ctrl_c_during_evaluate_is_one_line_that_says_how_to_resume(tiny_model, tmp_path):
    import signal
    import subprocess
    import time

    from helpers import cli_command

    manifest = tmp_path / "rows.jsonl"
    manifest.write_text("".join(json.dumps({"id": f"r{i}", "text": f"what did you do {i}", "label": "joy"}) + "\n"
                                for i in range(400)))
    out = tmp_path / "run"
    command = cli_command("evaluate", "--model", tiny_model, "--dataset", "manifest", "--data-dir", manifest,
                          "--template", "label_only", "--modalities", "text", "--out", out,
                          "--submission", "batched", "--batch-size", "1")  # a row a call: slow enough to interrupt
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_as_in_a_terminal)
    predictions = out / "predictions.jsonl"
    while proc.poll() is None and not (predictions.is_file() and predictions.read_text().count("\n") >= 2):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=STOP_S)
    saved = predictions.read_text().count("\n")
    assert proc.returncode == 130 and 0 < saved < 400, (proc.returncode, stderr[-2000:])
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    assert last == (f"mllm-mer evaluate: interrupted; {saved} rows saved in {out}; rerun the same command to "
                    "resume"), stderr[-2000:]
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=600)  # as the line says
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert len({json.loads(line)["id"] for line in predictions.read_text().splitlines()}) == 400


def _interrupt_when(command, ready, cwd=None) -> tuple[int, str]:
    """Start `command`, press Ctrl-C (SIGINT) once `ready(stderr so far)` holds; (exit code, whole stderr)."""
    import os
    import signal
    import subprocess
    import threading
    import time

    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=cwd,
                            preexec_fn=_as_in_a_terminal)
    chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: chunks.extend(iter(lambda: os.read(proc.stderr.fileno(), 65536), b"")))
    reader.start()
    while proc.poll() is None and not ready(b"".join(chunks).decode(errors="replace")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=STOP_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        reader.join(timeout=30)
        said = b"".join(chunks).decode(errors="replace")[-3000:]
        raise AssertionError(f"still running {STOP_S} s after Ctrl-C: {said}") from None
    reader.join(timeout=30)
    return proc.returncode, b"".join(chunks).decode(errors="replace")


def test_ctrl_c_during_dialogue_is_one_line_that_says_nothing_is_saved_and_a_rerun_starts_over(tiny_model, tmp_path):
    import re

    from helpers import cli_command

    talk = tmp_path / "talk.jsonl"
    talk.write_text("".join(json.dumps({"speaker": "AB"[i % 2], "start": 2.0 * i, "end": 2.0 * i + 1.5,
                                        "text": f"what did you do {i}"}) + "\n" for i in range(2000)))
    out = tmp_path / "timeline"
    code, stderr = _interrupt_when(cli_command("dialogue", "--model", tiny_model, "--transcript", talk, "--out", out,
                                               "--template", "label_only"),
                                   lambda err: re.search(r"dialogue: .*\| *[2-9]\d*/2000", err))  # answering
    assert code == 130 and "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == (
        "mllm-mer dialogue: interrupted; nothing saved: the timeline is written once every utterance is answered; "
        "rerunning the same command starts over")
    assert not (out / "timeline.jsonl").exists()  # as the line says


def test_ctrl_c_during_finetune_names_the_last_checkpoint_and_how_to_resume_from_it(tiny_model, colour_task,
                                                                                    tmp_path):
    import re

    from helpers import REPO, cli_command, recipe_overrides, run_cli

    from mllm_mer.cli.interrupted import last_checkpoint

    out = tmp_path / "lora"
    # as typed, from the repository root; a checkpoint every 2 steps and no dev split, so one comes soon
    args = ["finetune", "--config", "finetune/configs/tiny_lora.yaml",
            *recipe_overrides(tiny_model, colour_task, out, "dev_split=null", "save_steps=2")]
    code, stderr = _interrupt_when(cli_command(*args, "--max-steps", "1000"),
                                   lambda _: last_checkpoint(out / "checkpoints") is not None, cwd=REPO)
    assert code == 130 and "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-3000:]
    path, step = last_checkpoint(out / "checkpoints")
    assert stderr.strip().splitlines()[-1] == (
        f"mllm-mer finetune: interrupted; last checkpoint {path} (step {step}); add --resume-from-checkpoint {path} "
        "to resume from it (the same command alone starts over)")
    resumed = run_cli(*args, "--max-steps", step + 2, "--resume-from-checkpoint", path, cwd=REPO)  # as it says
    assert "adapter: " in resumed.stdout
    bar = resumed.stderr.replace("\r", "\n")  # the step bar starts past the saved steps: they are not run again
    assert f"{step + 2}/{step + 2} [" in bar and not re.search(rf"\| +1/{step + 2} \[", bar), bar[-3000:]


# -- misleading messages -----------------------------------------------------------------------------------------

def test_a_mistyped_local_model_path_is_no_such_directory_at_once(tmp_path):
    from helpers import run_cli

    (tmp_path / "runs").mkdir()  # `runs/tiny-modle` has a hub id's shape, but runs/ is a folder here
    proc = run_cli("predict", "--model", "runs/tiny-modle", "--transcript", "hi", check=False, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "runs/tiny-modle: no such model directory" in proc.stderr, proc.stderr


@pytest.mark.parametrize(("flags", "expected"), [
    ((), "predict needs an input: --transcript TEXT, --video FILE"),
    (("--video", "{wav}"), "this file has no video track; a sound file goes to --audio"),
    (("--video", "{png}"), "a still image, not a video; pass it as --image"),
    (("--audio", "{silent}"), "this file has no audio track"),
])
def test_predict_given_no_input_or_a_file_in_the_wrong_role_is_a_usage_error_before_any_model(
        tmp_path, flags, expected):
    from helpers import run_cli
    from PIL import Image

    from mllm_mer.synthetic.media import write_clip, write_wav

    files = {"wav": write_wav(tmp_path / "speech.wav"), "silent": write_clip(tmp_path / "silent.mp4", audio=False),
             "png": tmp_path / "face.png"}
    Image.new("RGB", (32, 32)).save(files["png"])
    args = [a.format(**files) for a in flags]
    # A model directory that cannot load: a check that waited for the model would fail on it, not on the input.
    proc = run_cli("predict", "--model", tmp_path / "not-loaded", *args, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert expected in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


# -- a dialogue cue in the last milliseconds of a recording -----------------------------------------------------

def test_a_cue_starting_in_the_last_frame_is_answered_from_its_words_like_one_past_the_end(tiny_model, tmp_path):
    from helpers import run_cli

    from mllm_mer.synthetic.media import write_clip

    clip = write_clip(tmp_path / "talk.mp4", seconds=3.3, fps=10)  # its last frame: 3.2 s, shown until 3.3 s
    cues = tmp_path / "talk.srt"
    cues.write_text("1\n00:00:00,500 --> 00:00:02,000\nAnn: I got the job!\n\n"
                    "2\n00:00:03,260 --> 00:00:05,000\nBob: That is wonderful.\n\n"
                    "3\n00:00:06,000 --> 00:00:07,000\nAnn: Are you still there?\n")
    out = tmp_path / "run"
    proc = run_cli("dialogue", "--model", tiny_model, "--video", clip, "--transcript", cues, "--out", out,
                   "--template", "label_only", "--max-frames", "2", check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(x) for x in (out / "timeline.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(r["ok"] for r in rows), rows
    assert any("no frames in the window 3.3-5.0 s (the video holds 3.3 s)" in n for n in rows[1]["notes"]), rows[1]
    assert any("no frames in the window 6.0-7.0 s" in n for n in rows[2]["notes"]), rows[2]


def test_ctrl_c_on_the_app_server_ends_it_without_a_traceback(tiny_model, tmp_path):
    import signal
    import subprocess

    from helpers import cli_command

    from mllm_mer.serving.vllm_server import free_port

    proc = subprocess.Popen(cli_command("app", "--model", tiny_model, "--backend", "transformers", "--port",
                                        free_port(), "--runs-dir", tmp_path),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, preexec_fn=_as_in_a_terminal)
    lines = []
    for line in proc.stderr:  # until the model is ready (or the app ends, which fails below)
        lines.append(line)
        if line.startswith("model "):
            break
    proc.send_signal(signal.SIGINT)
    rest = proc.communicate(timeout=STOP_S)[1]
    stderr = "".join(lines) + rest
    assert any(line.startswith("model ") for line in lines), stderr[-3000:]
    assert proc.returncode in (0, 130) and "Traceback" not in stderr, stderr[-3000:]
