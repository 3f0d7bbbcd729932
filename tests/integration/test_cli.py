"""The console script end to end, as a user runs it (subprocesses, offline)."""
import json
import math

import pytest
from helpers import run_cli

from mllm_mer.prompting import RATIONALE_MAX_CHARS


@pytest.fixture(scope="module")
def cli_model(tmp_path_factory):
    """`mllm-mer demo DIR` on a fresh folder: it builds the tiny model and a clip with sound, and predicts."""
    from mllm_mer.cli.demo import DEMO_TRANSCRIPT, TINY_NOTE

    folder = tmp_path_factory.mktemp("cli") / "demo"
    proc = run_cli("demo", folder)
    pred = json.loads(proc.stdout)
    assert pred["ok"] and pred["sample_id"] == "demo" and pred["tasks"]["emotion"]["probabilities"]
    assert TINY_NOTE in proc.stderr and f"demo clip: {folder / 'sample.mp4'}" in proc.stderr
    evidence = json.loads(proc.stderr[proc.stderr.index("{"):proc.stderr.index("}\n") + 1])
    assert evidence["transcript"] == DEMO_TRANSCRIPT and evidence["frames"] == 8 and evidence["vocal_cues"]
    out = folder / "tiny-qwen2-vl"
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    return out


@pytest.mark.parametrize("mode", ["generate", "score"])
def test_predict_prints_a_prediction_in_the_meld_sets(cli_model, face_png, mode):
    proc = run_cli("predict", "--model", cli_model, "--image", face_png, "--transcript", "You did WHAT?",
                   "--labels", "meld", "--mode", mode)
    pred = json.loads(proc.stdout)
    assert pred["ok"] is True
    emotion, sentiment = pred["tasks"]["emotion"], pred["tasks"]["sentiment"]
    assert emotion["label"] in {"neutral", "joy", "sadness", "anger", "surprise", "fear", "disgust"}
    assert sentiment["label"] in {"neutral", "positive", "negative"}
    for task in (emotion, sentiment):
        assert math.isclose(sum(task["probabilities"].values()), 1.0, rel_tol=1e-6)
    if mode == "generate":  # the schema bounds the rationale and names the cue modalities
        assert isinstance(pred["rationale"], str) and len(pred["rationale"]) <= RATIONALE_MAX_CHARS
        assert set(pred["cues"]) <= {"visual", "lexical"}  # a still and words: no vocal or context cue
    else:  # scoring writes no rationale
        assert pred["rationale"] is None and pred["cues"] == {}


@pytest.mark.vllm
def test_predict_with_the_vllm_backend(cli_model, face_png):
    proc = run_cli("predict", "--backend", "vllm", "--enforce-eager", "--max-model-len", "4096", "--model", cli_model,
                   "--image", face_png, "--transcript", "You did WHAT?", "--labels", "meld", "--max-new-tokens", "2048")
    pred = json.loads(proc.stdout)
    assert pred["ok"] is True
    assert pred["tasks"]["sentiment"]["label"] in {"neutral", "positive", "negative"}
    # vLLM's own logging is quiet unless asked for (--engine-log): warnings only
    assert not [line for line in proc.stderr.splitlines() if " INFO " in line], proc.stderr[-2000:]


def test_missing_model_names_make_tiny(tmp_path):
    proc = run_cli("predict", "--model", tmp_path / "nothing-here", "--transcript", "hi", check=False)
    assert proc.returncode == 2
    assert "make-tiny" in proc.stderr and "Traceback" not in proc.stderr


def test_unreachable_hub_id_is_explained(tmp_path):
    proc = run_cli("predict", "--model", "Qwen/Qwen2.5-VL-7B-Instruct", "--transcript", "hi", check=False)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "mllm-mer demo" in proc.stderr and "--model DIR" in proc.stderr and "Traceback" not in proc.stderr


def test_predict_shows_its_prompt_and_evidence_and_checks_files_before_loading(cli_model, tmp_path):
    from mllm_mer.synthetic.media import write_clip

    clip = write_clip(tmp_path / "clip.mp4", seconds=2.0)
    shown = run_cli("predict", "--model", cli_model, "--video", clip, "--transcript", "You did WHAT?", "--mode",
                    "score", "--max-frames", "2", "--show-prompt", "--show-evidence")
    assert json.loads(shown.stdout)["ok"]  # stdout stays the prediction alone
    evidence = json.loads(shown.stderr[shown.stderr.index("{"):shown.stderr.index("}\n") + 1])
    assert evidence["transcript"] == "You did WHAT?" and len(evidence["frame_times"]) == 2
    assert evidence["vocal_cues"] and evidence["notes"] == []
    assert "--- system ---" in shown.stderr and "[video]" in shown.stderr and "You did WHAT?" in shown.stderr
    missing = run_cli("predict", "--model", cli_model, "--audio", tmp_path / "gone.wav", check=False)
    assert missing.returncode == 2 and missing.stderr.strip().splitlines() == [
        f"mllm-mer predict: error: --audio {tmp_path / 'gone.wav'}: no such file"]  # nothing loaded before it
