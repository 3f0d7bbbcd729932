"""Models that hear: the tiny Qwen2.5-Omni thinker on audio, audio + video and text prompts, on the
transformers backend, the vLLM engine and through the CLI; bad audio gets a note or a clear failure."""
import json
import subprocess
import wave

import numpy as np
import pytest
from helpers import cli_command, run_cli

from mllm_mer.config import BackendConfig, MediaConfig, ModelConfig, PromptConfig, build
from mllm_mer.core.types import Sample
from mllm_mer.pipeline import predict, prepare
from mllm_mer.pipeline.resolve import resolve_prompt
from mllm_mer.synthetic.media import write_clip, write_wav


@pytest.fixture(scope="module")
def tiny_omni(tmp_path_factory):
    from mllm_mer.synthetic.checkpoints import build_checkpoint

    return build_checkpoint(tmp_path_factory.mktemp("models") / "tiny-omni", arch="qwen2_5_omni")


@pytest.fixture(scope="module")
def sounds(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sounds")
    stereo = folder / "stereo-44k.wav"
    t = np.arange(int(44_100 * 1.5)) / 44_100
    pcm = (0.3 * np.sin(2 * np.pi * 300 * t) * 32767).astype(np.int16)
    with wave.open(str(stereo), "wb") as f:
        f.setnchannels(2)
        f.setsampwidth(2)
        f.setframerate(44_100)
        f.writeframes(np.repeat(pcm, 2).tobytes())
    corrupt = folder / "corrupt.wav"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8)  # a JPEG header, not audio
    return {"tone": write_wav(folder / "tone.wav", seconds=2.0, tone_hz=220),
            "long": write_wav(folder / "long.wav", seconds=40.0, tone_hz=180),
            "clip": write_clip(folder / "clip.mp4", seconds=2.0),
            "silent": write_clip(folder / "silent.mp4", seconds=2.0, audio=False),
            "stereo": stereo, "corrupt": corrupt}


def omni_setup(model, modalities=None, mode="score"):
    return resolve_prompt(ModelConfig(model=str(model)), PromptConfig(labels="meld", template="label_only",
                                                                       modalities=modalities, mode=mode),
                          MediaConfig(max_frames=2))


def three_prompts(sounds):
    return [Sample(id="heard", audio=str(sounds["tone"]), transcript="Really?"),
            Sample(id="seen-and-heard", video=str(sounds["clip"]), transcript="Oh no."),
            Sample(id="read", transcript="I am so happy for you.")]


@pytest.fixture(scope="module")
def tone_task(tmp_path_factory):
    from mllm_mer.synthetic.tasks import make_tone_task

    return make_tone_task(tmp_path_factory.mktemp("tone") / "tone").parent


def tone_finetune(model, task, out):
    """`mllm-mer finetune` with the shipped Omni recipe on the sine-or-square task, as a user types it."""
    from helpers import REPO, recipe_overrides

    done = run_cli("finetune", "--config", "finetune/configs/tiny_omni_lora.yaml", *recipe_overrides(model, task, out),
                   check=False, timeout=900, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def tone_adapter(tiny_omni, tone_task, tmp_path_factory):
    return tone_finetune(tiny_omni, tone_task, tmp_path_factory.mktemp("tone-lora") / "run") / "adapter"


@pytest.fixture(scope="module")
def omni_engine(tiny_omni, tone_adapter):
    """One vLLM engine on the Omni thinker for the module, serving the adapter trained on the tone task."""
    from mllm_mer.backends.vllm_engine import VLLMEngineBackend

    engine = VLLMEngineBackend(build(BackendConfig, model=str(tiny_omni), adapter=[f"tone={tone_adapter}"],
                                     dtype="float32", enforce_eager=True, max_new_tokens=256, max_model_len=4096,
                                     kv_cache_gb=1, max_lora_rank=32))
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def omni_hf(tiny_omni):
    from mllm_mer.backends.hf import TransformersBackend

    backend = TransformersBackend(build(BackendConfig, model=str(tiny_omni), dtype="float32", max_new_tokens=256))
    yield backend
    backend.close()


def test_the_omni_family_hears_and_the_prompt_carries_the_waveform(tiny_omni, sounds):
    setup = omni_setup(tiny_omni)
    assert setup.hear_seconds == 30.0
    heard, both, read = prepare(three_prompts(sounds), setup)
    assert heard.prompt.audios and len(heard.prompt.audios[0]) == 2 * 16_000
    assert {"type": "audio"} in heard.prompt.messages[1]["content"]
    assert both.prompt.audios and both.prompt.videos  # the clip's own track, beside its frames
    assert not read.prompt.audios and {"type": "audio"} not in read.prompt.messages[1]["content"]
    assert any("heard 2.00 s of audio" in n for n in heard.notes)
    # ablated: no waveform goes in, and none is decoded
    [video_only] = prepare([three_prompts(sounds)[1]], omni_setup(tiny_omni, ["text", "video"]))
    assert not video_only.prompt.audios


def test_bad_and_unusual_audio_gets_a_note_or_a_clear_failure(tiny_omni, sounds):
    setup = omni_setup(tiny_omni)
    silent, long, stereo, corrupt = prepare(
        [Sample(id="silent", video=str(sounds["silent"]), transcript="hi"),
         Sample(id="long", audio=str(sounds["long"])), Sample(id="stereo", audio=str(sounds["stereo"])),
         Sample(id="corrupt", audio=str(sounds["corrupt"]), transcript="hi")], setup)
    assert silent.prompt is not None and not silent.prompt.audios
    assert any("no sound track" in n for n in silent.notes)
    assert len(long.prompt.audios[0]) == 30 * 16_000 and any("cut from 40.0 s to 30 s" in n for n in long.notes)
    assert len(stereo.prompt.audios[0]) == pytest.approx(1.5 * 16_000, abs=400)  # resampled to 16 kHz mono
    assert corrupt.prompt is None and corrupt.error_kind == "media" and "corrupt.wav" in corrupt.error


def test_greedy_tokens_and_label_probabilities_match_between_transformers_and_vllm(tiny_omni, omni_hf, omni_engine,
                                                                                    sounds):
    """Parity on audio, audio + video and text prompts (float32): the same answers, token for token."""
    prompts = [p.prompt for p in prepare(three_prompts(sounds), omni_setup(tiny_omni, mode="generate"))]
    want_text = omni_hf.generate(prompts)
    want = predict(omni_hf, three_prompts(sounds), omni_setup(tiny_omni))
    got_text = omni_engine.generate(prompts)
    got = predict(omni_engine, three_prompts(sounds), omni_setup(tiny_omni))
    assert got_text == want_text
    for g, w in zip(got, want, strict=True):
        assert g.ok and w.ok
        for task, tp in w.tasks.items():
            assert g.tasks[task].probabilities == pytest.approx(tp.probabilities, abs=1e-4)


def test_cli_predict_hears_a_clip_with_sound(tiny_omni, sounds):
    """(An audio file through the CLI: the RAVDESS evaluate below.)"""
    done = run_cli("predict", "--model", tiny_omni, "--video", sounds["clip"], "--mode", "score", "--max-frames", "2",
                   check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    prediction = json.loads(done.stdout)
    heard = [float(n.split()[1]) for n in prediction["notes"] if n.startswith("heard ")]
    assert prediction["ok"] and heard and heard[0] == pytest.approx(2.0, abs=0.05), prediction["notes"]


def test_evaluate_on_audio_only_ravdess_files_records_the_seconds_heard(tiny_omni, tmp_path):
    folder = tmp_path / "ravdess" / "Actor_23"
    folder.mkdir(parents=True)
    for emotion, hz in ((1, 180), (5, 260), (4, 220)):  # neutral, angry, sad
        write_wav(folder / f"03-01-{emotion:02d}-01-01-01-23.wav", seconds=1.0, tone_hz=hz)
    out = tmp_path / "run"
    done = run_cli("evaluate", "--model", tiny_omni, "--dataset", "ravdess", "--data-dir", tmp_path / "ravdess",
                   "--split", "test", "--modalities", "audio", "--mode", "score", "--out", out, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(r["prediction"]["ok"] for r in rows)
    assert all(r["inputs"]["audio_seconds"] == 1.0 and r["inputs"]["modalities"] == ["audio"] for r in rows)
    assert json.loads((out / "run.json").read_text())["fingerprint"]["prompt"]["hear_seconds"] == 30.0


def test_serve_hears_the_audio_sent_inline_and_kill_9_leaves_nothing(tiny_omni, sounds, tmp_path):
    """`mllm-mer serve` on an Omni thinker; `predict --backend openai` sends the waveform as an inline WAV.
    Then the server is killed with -9: its watchdog takes vLLM's server and engine with it."""
    import os
    import signal
    import time

    import httpx
    from helpers import assert_tree_gone

    from mllm_mer.serving.vllm_server import free_port

    port = free_port()
    serve = subprocess.Popen(cli_command("serve", "--model", tiny_omni, "--port", port, "--enforce-eager",
                                         "--max-model-len", "4096", "--log-file", tmp_path / "server.log"),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env={**os.environ, "MLLM_MER_API_KEY": "omni-key"})
    try:
        banner, deadline = "", time.monotonic() + 400
        while time.monotonic() < deadline and "serving" not in banner:
            line = serve.stdout.readline()
            assert line or serve.poll() is None, banner + (tmp_path / "server.log").read_text()[-3000:]
            banner += line
        done = run_cli("predict", "--backend", "openai", "--base-url", f"http://127.0.0.1:{port}", "--model", tiny_omni,
                       "--audio", sounds["tone"], "--transcript", "Really?", "--template", "label_only",
                       "--max-new-tokens", "64", check=False, env={**os.environ, "MLLM_MER_API_KEY": "omni-key"})
        assert done.returncode == 0, done.stderr[-3000:]
        prediction = json.loads(done.stdout)
        assert prediction["ok"] and any(n.startswith("heard 2.00 s") for n in prediction["notes"])
        assert_tree_gone(serve, signal.SIGKILL)
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=3)
    finally:
        if serve.poll() is None:
            serve.send_signal(signal.SIGTERM)
            serve.wait(timeout=120)


@pytest.mark.gpu
def test_the_omni_thinker_answers_in_bf16_on_a_gpu(tiny_omni, sounds):
    import torch

    from mllm_mer.backends.hf import TransformersBackend

    assert torch.cuda.is_available(), "the gpu tier runs on a CUDA machine (scripts/gpu_check.sh)"
    backend = TransformersBackend(build(BackendConfig, model=str(tiny_omni), dtype="bfloat16", max_new_tokens=256))
    try:
        predictions = predict(backend, three_prompts(sounds), omni_setup(tiny_omni))
    finally:
        backend.close()
    assert all(p.ok for p in predictions)
    assert next(backend.model.parameters()).dtype == torch.bfloat16


def test_only_a_model_that_hears_learns_a_label_the_sound_alone_carries(tiny_omni, tiny_model, tone_task,
                                                                         tone_adapter, omni_engine, tmp_path):
    """Sine or square at one pitch and loudness: the Omni thinker's LoRA learns it (dev, transformers) and vLLM
    serves it (test); the tiny Qwen2-VL, which reads transcript and cue text, gets the same prompt for both
    classes, so the same recipe leaves it at chance. `ablate` shows what hearing adds over the cue text."""
    from mllm_mer.config import EvaluateConfig
    from mllm_mer.evaluation.records import run_records
    from mllm_mer.evaluation.runner import run_evaluation
    from mllm_mer.pipeline.resolve import resolve_prompt
    from mllm_mer.strategies.fusion.ablation import write_ablation

    assert json.loads((tone_adapter.parent / "dev_metrics.json").read_text())["tasks"]["emotion"]["accuracy"] >= 0.9
    rows = [json.loads(line) for line in (tone_task / "manifest.jsonl").read_text().splitlines()]
    dev = [Sample(id=r["id"], audio=str(tone_task / r["audio"]), transcript=r["text"]) for r in rows
           if r["split"] == "dev"]
    read = prepare(dev, resolve_prompt(ModelConfig(model=str(tiny_model)), PromptConfig(
        labels=str(tone_task / "labels.yaml"), template="label_only", modalities=["text", "audio"]), MediaConfig()))
    assert len({json.dumps(p.prompt.messages) for p in read}) == 1
    assert "no clear speech" in read[0].prompt.media.vocal_cues
    assert not read[0].prompt.audios  # the VL family reads the cues; it does not hear
    reader = tone_finetune(tiny_model, tone_task, tmp_path / "reader")
    assert json.loads((reader / "dev_metrics.json").read_text())["tasks"]["emotion"]["accuracy"] <= 0.6

    out = tmp_path / "ablation"
    run_evaluation(build(EvaluateConfig, model=str(tiny_omni), adapter=[f"tone={tone_adapter}"], backend="vllm",
                         dataset="manifest", data_dir=str(tone_task / "manifest.jsonl"), split="test",
                         strategy="fusion", experts="all", out=str(out)), backend=omni_engine, progress=False)
    table = write_ablation(out, *run_records(out))
    accuracy = {line.split(" | ")[0].removeprefix("| expert: "): float(line.split(" | ")[1])
                for line in table.splitlines() if line.startswith("| expert: ")}
    assert accuracy["joint"] >= 0.9 and accuracy["audio:heard"] >= 0.9, table
    assert accuracy["audio:cue_text"] <= 0.6 and accuracy["text"] <= 0.6, table


def test_an_omni_agent_hears_the_window_it_listens_to(tiny_omni, omni_hf, omni_engine, tone_task):
    """listen(start, end) gives a model that hears the window's waveform itself, beside its cue text;
    both backends take the conversation, and the server's messages carry each sound inline."""
    from mllm_mer.backends.openai_client import to_openai_messages
    from mllm_mer.strategies.agent import Agent, start
    from mllm_mer.strategies.agent.loop import act, step_prompt

    setup = omni_setup(tiny_omni, modalities=["text", "audio"], mode="generate")
    [ready] = prepare([Sample(id="s", audio=str(tone_task / "sounds" / "square.wav"), transcript="Hm.")], setup)
    box = Agent(tools=("listen",), max_steps=2).toolbox(setup, backend=omni_engine)
    ep = start(ready.prompt, ready.sample, ready.media, box)
    act(ep, step_prompt(ep, box, 1), '{"listen":{"start":0.25,"end":0.75}}', 1, box, None)
    assert len(ep.audios) == 1 and ep.audios[0].size == 8000 and "heard 0.50 s" in ep.trace[0]["observation"]
    prompt = step_prompt(ep, box, 2)
    assert len(prompt.audios) == 2
    parts = [p["type"] for m in to_openai_messages(prompt) if isinstance(m["content"], list) for p in m["content"]]
    assert parts.count("audio_url") == 2
    assert omni_hf.generate([prompt]) == omni_engine.generate([prompt])
