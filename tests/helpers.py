"""Helpers shared by every test tier: repository paths, the MELD data switch, inputs made on the spot (random
samples with stills or frames) and the CLI run as a user types it."""
from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from mllm_mer.core.types import Sample, Turn
from mllm_mer.synthetic.media import write_clip, write_wav

REPO = Path(__file__).resolve().parents[1]
MELD_DIR = Path(os.environ.get("MLLM_MER_MELD_DIR", REPO.parent / "shared" / "data" / "meld"))
# Skipped only where the folder is absent and nobody pointed at one: in CI it is there, so these run.
requires_meld = pytest.mark.skipif(not MELD_DIR.is_dir() and "MLLM_MER_MELD_DIR" not in os.environ,
                                   reason=f"MELD CSVs not found at {MELD_DIR}; set MLLM_MER_MELD_DIR")

WORDS = ["you", "did", "what", "never", "again", "fine", "okay", "wow", "really", "no", "yes", "please", "stop", "now",
         "great", "terrible"]


# A dialogue of three cues, as subtitles in both formats a user may give.
SRT = """1
00:00:00,000 --> 00:00:01,200
Ann: I can't believe you did that.

2
00:00:01,200 --> 00:00:02,400
Bob: Did what? I was only joking.

3
00:00:02,400 --> 00:00:03,800
Ann: It was not funny at all.
"""

VTT = """WEBVTT

00:00.000 --> 00:01.200
<v Ann>I can't believe you did that.

00:01.200 --> 00:02.400
<v Bob>Did what? I was only joking.

00:02.400 --> 00:03.800
<v Ann>It was not funny at all.
"""


def assert_same_answers(got, want, tol: float = 1e-6, where: str = "") -> None:
    """Saved predictions equal, floats to `tol`: an engine's float sums change in the last digits with how
    requests were batched together, so two runs that batched differently differ there and nowhere else."""
    if isinstance(got, dict) and isinstance(want, dict):
        assert got.keys() == want.keys(), where
        for k in got:
            assert_same_answers(got[k], want[k], tol, f"{where}.{k}")
    elif isinstance(got, list) and isinstance(want, list):
        assert len(got) == len(want), where
        for i, (a, b) in enumerate(zip(got, want, strict=True)):
            assert_same_answers(a, b, tol, f"{where}[{i}]")
    elif isinstance(got, float) and isinstance(want, float):
        assert abs(got - want) <= tol, f"{where}: {got} != {want}"
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


def random_samples(n: int, seed: int = 0) -> list[Sample]:
    """Random text and context; even samples carry one still, odd ones 2 or 4 frames of a clip."""
    rng = random.Random(seed)
    samples = []
    for i in range(n):
        size = (rng.randint(40, 120), rng.randint(40, 120))
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 12)))
        context = tuple(Turn(rng.choice(["A", "B"]), rng.choice(WORDS)) for _ in range(rng.randint(0, 3)))
        images = [Image.new("RGB", size, tuple(rng.randint(0, 255) for _ in range(3)))
                  for _ in range(rng.choice([2, 4]) if i % 2 else 1)]
        samples.append(Sample(id=f"r{i}", transcript=text, context=context,
                              frames=tuple(images) if i % 2 else (), image=None if i % 2 else images[0]))
    return samples


def varied_inputs(folder) -> list[Sample]:
    """50 varied inputs: stills and frame lists (random), clips with and without sound, audio only,
    and dialogues (six turns each) whose earlier turns an agent's context tool can fetch."""
    clips = [write_clip(folder / "sound.mp4", seconds=2.0, fps=10, audio=True),
             write_clip(folder / "silent.mp4", seconds=3.0, fps=8, audio=False)]
    wav = write_wav(folder / "voice.wav", seconds=1.5)
    rng = random.Random(7)
    samples = list(random_samples(20, seed=3))
    for i in range(30):
        kind = i % 3  # 0: clip with sound, 1: silent clip, 2: audio only (clips alternate)
        samples.append(Sample(id=f"a{i}", transcript=" ".join(rng.choice(WORDS) for _ in range(4)),
                              speaker=rng.choice(["Ann", "Bob"]), video=str(clips[i % 2]) if kind < 2 else None,
                              audio=str(wav) if kind == 2 else None,
                              context=(Turn("Ann", "earlier"),) if i % 6 > 1 else (),
                              metadata={"dialogue": f"d{i // 6}"}))
    return samples


def cli_command(*args) -> list[str]:
    """The command line of `mllm-mer ARGS...` in this interpreter (for Popen, signals and timing by the caller)."""
    return [sys.executable, "-m", "mllm_mer.cli", *map(str, args)]


def run_cli(*args, check: bool = True, timeout: int | None = 600, cwd=None, env=None) -> subprocess.CompletedProcess:
    """`mllm-mer ARGS...` as a user types it (a subprocess); with `check`, a non-zero exit fails with its output."""
    proc = subprocess.run(cli_command(*args), capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)
    if check:
        assert proc.returncode == 0, (f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\n"
                                      f"stderr:\n{proc.stderr[-3000:]}")
    return proc


def recipe_overrides(model, task, out, *extra) -> list[str]:
    """`key=value` overrides that point a fine-tuning recipe at a model, a synthetic task and an output folder."""
    return [f"model={model}", f"output_dir={out}", f"data_dir={task / 'manifest.jsonl'}",
            f"labels={task / 'labels.yaml'}", f"dataset_options={{labels: {task / 'labels.yaml'}, task: emotion}}",
            *extra]


def cli_finetune(recipe, overrides, timeout=900) -> subprocess.CompletedProcess:
    """`mllm-mer finetune --config RECIPE key=value ...` from the repository root, as a user types it."""
    proc = run_cli("finetune", "--config", recipe, *overrides, check=False, timeout=timeout, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def dev_accuracy(run) -> float:
    """The emotion accuracy a fine-tuning run reached on its dev split."""
    import json

    return json.loads((Path(run) / "dev_metrics.json").read_text())["tasks"]["emotion"]["accuracy"]


def served_alike(tiny_model, vllm_backend, task, adapter, setup, name: str) -> list:
    """A trained adapter's answers on the task's test split: transformers' (returned) and the shared vLLM
    engine's, which must give the same labels."""
    from mllm_mer.backends.hf import TransformersBackend
    from mllm_mer.config import BackendConfig, ModelConfig
    from mllm_mer.datasets import load_split
    from mllm_mer.pipeline import predict

    test = list(load_split("manifest", task / "manifest.jsonl", "test", labels=str(task / "labels.yaml")).samples)
    tuned = TransformersBackend(BackendConfig(model=ModelConfig(model=str(tiny_model), dtype="float32",
                                                                adapter=[f"{name}={adapter}"])))
    hf_preds = predict(tuned, test, setup, adapter=name, with_probabilities=False)
    vllm_backend.register_adapter(name, str(adapter))
    vllm_preds = predict(vllm_backend, test, setup, adapter=name, with_probabilities=False)
    assert [p.label("emotion") for p in vllm_preds] == [p.label("emotion") for p in hf_preds]
    return hf_preds


def assert_tree_gone(proc, sig) -> None:
    """Send `sig` to a command and assert that nothing it started (engine, watchdog, server) survives."""
    import signal

    import psutil

    tree = psutil.Process(proc.pid).children(recursive=True)
    assert tree, "the command should have started processes (engine, watchdog)"
    seen = {p.pid: _marks(p) for p in tree}  # what the watchdog can recognise each by, before the signal
    proc.send_signal(sig)
    proc.wait(timeout=60)
    _, alive = psutil.wait_procs(tree, timeout=120)  # a condition: a loaded machine may take a while
    assert [p.pid for p in alive] == [], (f"left running after {signal.Signals(sig).name}: {alive}; marks "
                                          f"before the signal: {seen}; now: {[_marks(p) for p in alive]}")


def _marks(proc) -> str:
    """A process's command line, guard variable and open pipes (the watchdog's marks), for a failure message."""
    import contextlib
    import os

    import psutil

    with contextlib.suppress(psutil.Error, OSError):
        pipes = [os.readlink(f"/proc/{proc.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{proc.pid}/fd")]
        return (f"{' '.join(proc.cmdline())[:80]!r} guarded={proc.environ().get('MLLM_MER_GUARDED')} "
                f"pipes={[p for p in pipes if p.startswith('pipe:')]}")
    return "gone"


MAX_STEPS = 3


def agent_setup(tiny_model, **strategy):
    """The prompt setup and the agent strategy (label-only MELD, 4 frames, MAX_STEPS) on `tiny_model`."""
    from mllm_mer.config import MediaConfig, ModelConfig, PromptConfig, StrategyConfig
    from mllm_mer.pipeline.resolve import resolve_prompt, resolve_strategy

    setup = resolve_prompt(ModelConfig(model=str(tiny_model)), PromptConfig(labels="meld", template="label_only"),
                           MediaConfig(max_frames=4))
    return setup, resolve_strategy(StrategyConfig(strategy="agent", max_steps=MAX_STEPS, **strategy), setup)


def check_traces(predictions, samples, setup, agent, max_steps=MAX_STEPS):
    """Every agent run ends with a valid answer after at most `max_steps` steps of tools that apply to its input."""
    from mllm_mer.strategies.agent.tools import TOOLS

    by_id = {s.id: s for s in samples}
    for p in predictions:
        assert p.ok, p.error
        trace = p.extras["agent"]["trace"]
        assert trace and 1 <= len(trace) <= max_steps
        assert [s["step"] for s in trace] == list(range(1, len(trace) + 1))
        assert trace[-1]["tool"] == "answer" and all(s["tool"] in TOOLS for s in trace[:-1])
        for step in trace[:-1]:
            sample = by_id[p.sample_id]
            if step["tool"] in ("look", "listen"):
                assert sample.video or sample.audio
                assert set(step["args"]) >= {"start", "end"}
            if step["tool"] == "look":
                assert sample.video and 1 <= step["args"]["n"] <= agent.look_frames and step["images"] >= 1
            if step["tool"] == "context":
                assert sample.metadata.get("dialogue")
        label_set = setup.scheme.label_sets[0]
        assert p.label(label_set.task) in label_set.labels
        probabilities = p.tasks[label_set.task].probabilities
        assert probabilities and abs(sum(probabilities.values()) - 1) < 1e-4


MELD_EMOTIONS = {"neutral", "joy", "sadness", "anger", "surprise", "fear", "disgust"}


def analyse(client, video, transcript="You did WHAT?", context=None, strategy="single"):
    """One call of the app's /analyse endpoint, as its Analyse tab sends it."""
    from gradio_client import handle_file

    table = {"headers": ["speaker", "text"], "data": context or [["Rachel", "I threw out your sandwich."]]}
    return client.predict(handle_file(str(video)) if video else None, None, transcript, table, "meld", "zero_shot",
                          "(base model)", ["text", "video", "audio"], False, strategy, api_name="/analyse")


def assert_valid(result):
    """An /analyse answer whose panels, headline and probabilities agree with each other and the label sets."""
    summary, first, second, rationale, cues, frames = result[:6]
    assert "emotion:" in summary and "sentiment:" in summary, summary
    assert (first["label"], second["label"]) == ("emotion", "sentiment")  # panels titled by their task
    assert first["value"]["label"] in MELD_EMOTIONS
    assert second["value"]["label"] in {"neutral", "positive", "negative"}
    assert f"emotion: {first['value']['label']}" in summary  # the panel's head is the answer's label
    assert abs(sum(c["confidence"] for c in first["value"]["confidences"]) - 1) < 1e-3


# The serve guard driven in process: the app behind it is a recorder standing in for vLLM's.
GUARD_KEY = "guard-key-7d2"
GUARD_AUTH = {"Authorization": f"Bearer {GUARD_KEY}"}


class AsgiRecorder:
    """Stands in for vLLM's app: records what reached it and answers 200."""

    def __init__(self):
        self.calls = []

    async def __call__(self, scope, receive, send):
        message = await receive() if scope["type"] == "http" else {}
        self.calls.append((scope.get("method"), scope["path"], message.get("body", b"")))
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})


def call_asgi(app, method, path, **kwargs):
    """One request to an ASGI app in this process."""
    import asyncio

    import httpx

    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as client:
            return await client.request(method, path, **kwargs)
    return asyncio.run(go())


def described_run(folder: Path, rationales: list[tuple[str, str]]) -> Path:
    """A finished run's predictions.jsonl, as evaluate writes it: one answer per (label, rationale), clip0, clip1..."""
    import json

    folder.mkdir(parents=True)
    records = [{"id": f"clip{i}", "gold": {"emotion": "joy"}, "prediction": {
        "sample_id": f"clip{i}", "tasks": {"emotion": {"label": label}}, "rationale": text,
        "cues": {"visual": "a smile" if label == "joy" else "", "vocal": ""}, "ok": True}}
        for i, (label, text) in enumerate(rationales)]
    (folder / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder
