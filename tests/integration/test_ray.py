"""`evaluate --engine ray` as a user runs it: a local Ray cluster, one backend actor, 40 MELD test rows (text)."""
import json
import signal
import subprocess
import time

import pytest
from helpers import MELD_DIR, cli_command, requires_meld

pytestmark = [pytest.mark.slow, requires_meld]
# A pipeline whose actors starve the decode tasks never finishes: the time limit is the stall guard.
STALL_LIMIT_S = 420


def evaluate(tiny_model, out, *extra):
    return cli_command("evaluate", "--model", tiny_model, "--dataset", "meld", "--data-dir", MELD_DIR, "--split",
                       "test", "--limit", "40", "--modalities", "text", "--template", "label_only", "--batch-size", "4",
                       "--out", out, *extra)


def predictions(out):
    lines = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    return lines, {r["id"]: r["prediction"] for r in lines}


def test_ray_gives_the_local_answers_and_a_killed_run_resumes_without_loss_or_repeat(tiny_model, tmp_path):
    local = tmp_path / "local"
    done = subprocess.run(evaluate(tiny_model, local), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    on_ray = tmp_path / "ray"
    proc = subprocess.Popen(evaluate(tiny_model, on_ray, "--engine", "ray", "--replicas", "1"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    file = on_ray / "predictions.jsonl"
    deadline = time.monotonic() + STALL_LIMIT_S
    while time.monotonic() < deadline and proc.poll() is None:
        if file.is_file() and file.read_text().count("\n") >= 4:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the Ray run ended (or failed) before it could be killed mid-way"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = file.read_text().count("\n")
    assert 0 < written < 40, written

    resumed = subprocess.run(evaluate(tiny_model, on_ray, "--engine", "ray", "--replicas", "1"),
                             capture_output=True, text=True, timeout=STALL_LIMIT_S)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    lines, got = predictions(on_ray)
    assert len(lines) == 40 and len(got) == 40  # every row once: none lost, none twice
    assert got == predictions(local)[1]  # greedy: the same answers as in process
    assert "partial: 40 of 2610" in (on_ray / "report.md").read_text()


def test_ray_refuses_what_its_actors_cannot_carry(tiny_model, tmp_path):
    done = subprocess.run(evaluate(tiny_model, tmp_path / "r", "--engine", "ray", "--template", "retrieved",
                                   "--retrieve-split", "dev"), capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "does not carry a retrieval index" in done.stderr
    assert "Traceback" not in done.stderr
