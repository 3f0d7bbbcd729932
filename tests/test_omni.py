"""Models that hear: the tiny Qwen2.5-Omni thinker on audio, audio + video and text prompts, on the
transformers backend, the vLLM engine and through the CLI; bad audio gets a note or a clear failure."""
import json
import subprocess
import sys
import wave

import numpy as np
import pytest

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


def test_greedy_tokens_and_label_probabilities_match_between_transformers_and_vllm(tiny_omni, omni_hf, sounds):
    """Parity on audio, audio + video and text prompts (float32): the same answers, token for token."""
    from mllm_mer.backends.vllm_engine import VLLMEngineBackend

    prompts = [p.prompt for p in prepare(three_prompts(sounds), omni_setup(tiny_omni, mode="generate"))]
    want_text = omni_hf.generate(prompts)
    want = predict(omni_hf, three_prompts(sounds), omni_setup(tiny_omni))
    engine = VLLMEngineBackend(build(BackendConfig, model=str(tiny_omni), dtype="float32", enforce_eager=True,
                                     max_new_tokens=256, max_model_len=4096, kv_cache_gb=1))
    try:
        got_text = engine.generate(prompts)
        got = predict(engine, three_prompts(sounds), omni_setup(tiny_omni))
    finally:
        engine.close()
    assert got_text == want_text
    for g, w in zip(got, want, strict=True):
        assert g.ok and w.ok
        for task, tp in w.tasks.items():
            assert g.tasks[task].probabilities == pytest.approx(tp.probabilities, abs=1e-4)


def test_cli_predict_hears_a_clip_with_sound(tiny_omni, sounds):
    """(An audio file through the CLI: the RAVDESS evaluate below.)"""
    done = subprocess.run([sys.executable, "-m", "mllm_mer.cli", "predict", "--model", str(tiny_omni), "--video",
                           str(sounds["clip"]), "--mode", "score", "--max-frames", "2"],
                          capture_output=True, text=True, timeout=600)
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
    done = subprocess.run([sys.executable, "-m", "mllm_mer.cli", "evaluate", "--model", str(tiny_omni), "--dataset",
                           "ravdess", "--data-dir", str(tmp_path / "ravdess"), "--split", "test", "--modalities",
                           "audio", "--mode", "score", "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(r["prediction"]["ok"] for r in rows)
    assert all(r["inputs"]["audio_seconds"] == 1.0 and r["inputs"]["modalities"] == ["audio"] for r in rows)
    assert json.loads((out / "run.json").read_text())["fingerprint"]["prompt"]["hear_seconds"] == 30.0


def test_serve_hears_the_audio_sent_inline(tiny_omni, sounds, tmp_path):
    """`mllm-mer serve` on an Omni thinker; `predict --backend openai` sends the waveform as an inline WAV."""
    import os
    import signal
    import time

    from mllm_mer.serving.vllm_server import free_port

    port = free_port()
    serve = subprocess.Popen([sys.executable, "-m", "mllm_mer.cli", "serve", "--model", str(tiny_omni), "--port",
                              str(port), "--enforce-eager", "--max-model-len", "4096", "--log-file",
                              str(tmp_path / "server.log")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, env={**os.environ, "MLLM_MER_API_KEY": "omni-key"})
    try:
        banner, deadline = "", time.monotonic() + 400
        while time.monotonic() < deadline and "serving" not in banner:
            line = serve.stdout.readline()
            assert line or serve.poll() is None, banner + (tmp_path / "server.log").read_text()[-3000:]
            banner += line
        done = subprocess.run([sys.executable, "-m", "mllm_mer.cli", "predict", "--backend", "openai", "--base-url",
                               f"http://127.0.0.1:{port}", "--model", str(tiny_omni), "--audio", str(sounds["tone"]),
                               "--transcript", "Really?", "--template", "label_only", "--max-new-tokens", "64"],
                              capture_output=True, text=True, timeout=600,
                              env={**os.environ, "MLLM_MER_API_KEY": "omni-key"})
        assert done.returncode == 0, done.stderr[-3000:]
        prediction = json.loads(done.stdout)
        assert prediction["ok"] and any(n.startswith("heard 2.00 s") for n in prediction["notes"])
    finally:
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
