"""Test inputs made on the spot: random samples with stills or frames."""
from __future__ import annotations

import random
import subprocess
import sys

from PIL import Image

from mllm_mer.core.types import Sample, Turn
from mllm_mer.synthetic.media import write_clip, write_wav

WORDS = ["you", "did", "what", "never", "again", "fine", "okay", "wow", "really", "no", "yes", "please", "stop", "now",
         "great", "terrible"]


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


def run_cli(*args, check: bool = True, timeout: int = 600) -> subprocess.CompletedProcess:
    """`mllm-mer ARGS...` as a user types it (a subprocess); with `check`, a non-zero exit fails with its stderr."""
    proc = subprocess.run([sys.executable, "-m", "mllm_mer.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def assert_tree_gone(proc, sig) -> None:
    """Send `sig` to a command and assert that nothing it started (engine, watchdog, server) survives."""
    import signal

    import psutil

    tree = psutil.Process(proc.pid).children(recursive=True)
    assert tree, "the command should have started processes (engine, watchdog)"
    proc.send_signal(sig)
    proc.wait(timeout=60)
    _, alive = psutil.wait_procs(tree, timeout=30)
    assert [p.pid for p in alive] == [], f"left running after {signal.Signals(sig).name}: {alive}"
