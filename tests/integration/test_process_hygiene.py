"""No engine outlives its command: SIGTERM and SIGKILL to evaluate, and app and a benchmark (vLLM on the tiny
model); `serve` killed with -9 is tested on the Omni thinker (test_omni), the same server path."""
import json
import os
import signal
import subprocess
import sys
import time

import httpx
import psutil
import pytest
from helpers import assert_tree_gone
from helpers import cli_command as cli

from mllm_mer.serving.vllm_server import free_port

pytestmark = [pytest.mark.vllm, pytest.mark.slow]
ENGINE = ["--backend", "vllm", "--enforce-eager", "--max-model-len", "4096", "--dtype", "float32"]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    path = tmp_path_factory.mktemp("hygiene") / "m.jsonl"
    path.write_text("".join(json.dumps({"id": f"s{i}", "text": f"utterance number {i}", "label": "neutral"}) + "\n"
                            for i in range(400)))
    return path


def wait_for(condition, proc, timeout=300, what="start"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"exited with {proc.returncode} before it could {what}")
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"did not {what} within {timeout} s")


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def engine_children(proc) -> list[psutil.Process]:
    tree = psutil.Process(proc.pid).children(recursive=True)
    return tree if any("VLLM" in " ".join(p.cmdline()) or "spawn" in " ".join(p.cmdline()) for p in tree) else []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_evaluate(tiny_model, manifest, tmp_path, sig):
    out = tmp_path / "run"
    proc = subprocess.Popen(cli("evaluate", "--model", tiny_model, *ENGINE, "--dataset", "manifest", "--data-dir",
                                manifest, "--out", out, "--batch-size", "1", "--mode", "score",
                                "--template", "label_only"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if sig == signal.SIGTERM:  # the `finally:` path runs once the engine has answered
        wait_for(lambda: (out / "predictions.jsonl").is_file() and (out / "predictions.jsonl").stat().st_size > 0,
                 proc, what="answer a sample")
    else:  # kill -9 as soon as the engine runs: the watchdog's case, also for processes it had no time to see
        wait_for(lambda: engine_children(proc), proc, what="start its engine")
    assert_tree_gone(proc, sig)


@pytest.mark.parametrize("sig", [signal.SIGTERM])  # kill -9 goes through the same watchdog as evaluate's
def test_app(tiny_model, sig, tmp_path):
    port = free_port()
    proc = subprocess.Popen(cli("app", "--model", tiny_model, *ENGINE, "--port", port, "--runs-dir", tmp_path),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path,
                            env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"})

    wait_for(lambda: answers(f"http://127.0.0.1:{port}/"), proc, what="serve the page")
    from gradio_client import Client  # an answer means the engine is up (requests wait for it)

    summary = Client(f"http://127.0.0.1:{port}/", verbose=False).predict(
        None, None, "hi", {"headers": ["speaker", "text"], "data": [["", ""]]}, "meld", "label_only", "(base model)",
        ["text"], True, api_name="/analyse")[0]
    assert "emotion:" in summary
    assert engine_children(proc), "the vLLM engine should be running"
    assert_tree_gone(proc, sig)


def test_a_benchmark_killed_mid_run_leaves_no_engine(tiny_model):
    """`python -m benchmarks.engine_full`, killed (-9) while its vLLM engine runs: the benchmarks start the
    CLI's watchdog too, so the EngineCore goes with it."""
    from helpers import MELD_DIR, REPO

    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.engine_full", "--model", str(tiny_model), "--n", "400",
                             "--clips", "0", "--repeats", "3", "--meld-dir", str(MELD_DIR)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: engine_children(proc), proc, what="start its engine")
    assert_tree_gone(proc, signal.SIGKILL)


def test_a_watchdog_that_starts_after_its_command_died_still_stops_what_it_left():
    """kill -9 can land before the watchdog's first look: it then sweeps every process carrying the mark."""
    from mllm_mer.serving.process_guard import _watch

    parent = subprocess.Popen([sys.executable, "-c", "import os, subprocess, sys, time; "
                               "os.environ['MLLM_MER_GUARDED'] = str(os.getpid()); "
                               "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
                               "print(c.pid, flush=True); time.sleep(600)"], stdout=subprocess.PIPE, text=True)
    child = psutil.Process(int(parent.stdout.readline()))
    born = psutil.Process(parent.pid).create_time()
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    while psutil.Process(child.pid).ppid() == parent.pid:  # orphaned: reparented away from the dead command
        time.sleep(0.05)
    _watch(parent.pid, born)  # the parent is already gone when the watchdog starts
    child.wait(timeout=30)
    assert not child.is_running()
