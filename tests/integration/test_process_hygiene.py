"""No engine outlives its command: SIGTERM and SIGKILL to evaluate, and app and a benchmark (vLLM on the tiny
model); `serve` killed with -9 is tested on the Omni thinker (test_omni), the same server path. No engine's shared
memory outlives SIGTERM, or a kill -9 past the next start."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

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


def evaluate(tiny_model, manifest, out) -> subprocess.Popen:
    return subprocess.Popen(cli("evaluate", "--model", tiny_model, *ENGINE, "--dataset", "manifest", "--data-dir",
                                manifest, "--out", out, "--batch-size", "1", "--submission", "batched", "--mode",
                                "score", "--template", "label_only"),  # one sample per call: a run long enough to kill
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_evaluate_killed_with_sigkill(tiny_model, manifest, tmp_path):
    proc = evaluate(tiny_model, manifest, tmp_path / "run")
    # kill -9 as soon as the engine runs: the watchdog's case, also for processes it had no time to see
    wait_for(lambda: engine_children(proc), proc, what="start its engine")
    assert_tree_gone(proc, signal.SIGKILL)


def shared_memory(proc) -> set[str]:
    """The /dev/shm segments (vLLM's `psm_*` ring buffers) that a command's processes have mapped or open."""
    held = set()
    for p in [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]:
        try:
            held |= {line.split(maxsplit=5)[5].strip() for line in Path(f"/proc/{p.pid}/maps").read_text().splitlines()
                     if "/dev/shm/psm_" in line}
            held |= {target for fd in os.listdir(f"/proc/{p.pid}/fd")
                     if "/dev/shm/psm_" in (target := os.readlink(f"/proc/{p.pid}/fd/{fd}"))}
        except OSError:  # exited meanwhile
            continue
    return held


def answered(out) -> int:
    path = out / "predictions.jsonl"
    return path.stat().st_size if path.is_file() else 0


def test_a_run_killed_whole_leaves_no_shared_memory_past_a_rerun_and_sigterm_leaves_none(tiny_model, manifest,
                                                                                          tmp_path):
    """Every process of a run killed -9 at once (the OOM killer, `kill -9 -- -PGID`, a container stop): nothing
    is left to clean up, so the engine's /dev/shm segments stay until the same command, rerun at once, sweeps
    them as its engine starts; that rerun, stopped with SIGTERM, leaves none of its own."""
    out = tmp_path / "run"
    proc = evaluate(tiny_model, manifest, out)
    wait_for(lambda: answered(out) and shared_memory(proc), proc, what="answer a sample")
    ours, tree = shared_memory(proc), [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    for p in reversed(tree):  # the command last, so that nothing of the run is left to clean up
        p.kill()
    psutil.wait_procs(tree, timeout=120)
    left = {path for path in ours if os.path.exists(path)}
    assert left, "a run killed whole should leave its engine's shared memory (else this test checks nothing)"

    rerun, before = evaluate(tiny_model, manifest, out), answered(out)
    wait_for(lambda: answered(out) > before, rerun, what="resume and answer")  # its engine started: the sweep ran
    assert not [path for path in left if os.path.exists(path)], "the rerun's start should sweep the killed run's"
    held = shared_memory(rerun)
    assert_tree_gone(rerun, signal.SIGTERM)
    assert not [path for path in held if os.path.exists(path)], "SIGTERM should leave no shared memory behind"
    ids = [json.loads(line)["id"] for line in (out / "predictions.jsonl").read_text().splitlines() if line.strip()]
    assert len(ids) == len(set(ids)), "the kill and the rerun should duplicate no row"


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


ORPHANS = {  # a child the dead command left: exec'd (it carries the variable) or forked, as vLLM starts its engine
    "exec": "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); c = c.pid",
    "fork": "c = os.fork()\nif c == 0: time.sleep(600); os._exit(0)",
    # exec'd, then renamed as vLLM names its engine core (setproctitle writes over what /proc environ shows)
    "renamed": "import tempfile; ready = tempfile.mktemp()\n"
               "c = subprocess.Popen([sys.executable, '-c', 'import setproctitle, sys, time; "
               "setproctitle.setproctitle(\"VLLM::EngineCore\"); open(sys.argv[1], \"w\").close(); "
               "time.sleep(600)', ready]).pid\n"
               "while not os.path.exists(ready): time.sleep(0.05)",
}


@pytest.mark.parametrize("how", sorted(ORPHANS))
def test_a_watchdog_that_starts_after_its_command_died_still_stops_what_it_left(how):
    """kill -9 can land before the watchdog's first look: it then sweeps every process carrying a mark (a forked
    child's /proc environ lacks a variable set after start-up: it holds the guard's pipe instead; a renamed one
    keeps the variable visible)."""
    from mllm_mer.serving.process_guard import _watch

    code = ("import os, subprocess, sys, time\nfrom mllm_mer.serving import process_guard as g\n"
            "inode = g.mark_this_process()\n"
            f"{ORPHANS[how]}\nprint(c, inode, flush=True); time.sleep(600)")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    pid, inode = map(int, parent.stdout.readline().split())
    child, born = psutil.Process(pid), psutil.Process(parent.pid).create_time()
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    while psutil.Process(child.pid).ppid() == parent.pid:  # orphaned: reparented away from the dead command
        time.sleep(0.05)
    _watch(parent.pid, born, inode)  # the parent is already gone when the watchdog starts
    child.wait(timeout=30)
    assert not child.is_running()
