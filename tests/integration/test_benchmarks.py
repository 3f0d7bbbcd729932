"""Smoke test: every benchmark runs end to end (tiny sizes), so that the benchmarks never rot.

Performance itself is measured by `python -m benchmarks.run_all`, never asserted here.
"""
import subprocess
import sys

import pytest
from helpers import REPO


@pytest.mark.vllm
def test_run_all_writes_every_ratio(tiny_model, tmp_path):
    from mllm_mer.synthetic.tiny import make_tiny

    out = tmp_path / "RESULTS.md"
    thinking = make_tiny(tmp_path / "tiny-thinking", thinking=True)  # the reasoning orders' engine
    proc = subprocess.run([sys.executable, "-m", "benchmarks.run_all", "--quick", "--model", str(tiny_model),
                           "--n", "3", "--tokens", "4", "--media-seconds", "2", "--out", str(out),
                           "--thinking-model", str(thinking), "--enforce-eager"],  # no graph compile: half the start
                          capture_output=True, text=True, timeout=900, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = out.read_text()
    for measure in ("vLLM engine vs per-sample transformers loop", "label scoring vs generate-with-rationale",
                    "few-shot cost / zero-shot cost", "8 sampled frames vs decode everything",
                    "agent (max 3 steps) time / single-pass time", "retrieved template (k=4) time",
                    "predicted-context samples/s (each dialogue on its own) / independent",
                    "fusion (3 experts + joint) time",
                    "`--reasoning before` time / answer-first time", "`--reasoning native` time / answer-first time",
                    "label scoring after reasoning / generating the reasoning"):
        row = next(line for line in table.splitlines() if line.startswith(f"| {measure}"))
        assert row.split("|")[2].strip().endswith("x")
    assert "prefix-cache hits" in table and "native:" in table  # the reasoning orders' details, hit rate shown


def test_long_recording_benchmark_alone(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "benchmarks.long_media", "--minutes", "0.2", "--windows", "4",
                           "--frames", "2", "--folder", str(tmp_path)], capture_output=True, text=True, timeout=300,
                          cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "shared pass" in proc.stdout and "per-utterance seeking" in proc.stdout
    assert "exact times" in proc.stdout and "approximate times" in proc.stdout and "PSNR >=" in proc.stdout


def test_media_benchmark_alone():
    proc = subprocess.run([sys.executable, "-m", "benchmarks.media", "--quick", "--seconds", "2"],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "decode everything" in proc.stdout and "x)" in proc.stdout and "machine:" in proc.stdout


@pytest.mark.parametrize("module", ["run_all", "media", "throughput", "scoring", "prefix_cache", "agent",
                                    "dialogue", "fusion", "engine_full", "long_media", "ray_scale", "frontend",
                                    "omni", "intake", "physio", "reasoning", "strategies_full"])
def test_benchmark_command_lines(module, capsys):
    """Each benchmark's flags come from its config dataclasses (no engine is started); `--help` is read
    in this process (each module's own command line, as `python -m benchmarks.MODULE --help` prints it)."""
    import importlib

    with pytest.raises(SystemExit) as exited:
        importlib.import_module(f"benchmarks.{module}").main(["--help"])
    assert exited.value.code == 0
    stdout = capsys.readouterr().out
    expected = {"run_all": ["--quick", "--model", "--n", "--tokens", "--media-seconds", "--out", "--thinking-model"],
                "media": ["--quick", "--seconds", "--frames"],
                "throughput": ["--model", "--n", "--tokens", "--forward-batch-size", "--kv-cache-gb"],
                "scoring": ["--model", "--n"],
                "prefix_cache": ["--model", "--n", "--tokens"],
                "agent": ["--model", "--n", "--repeats"],
                "dialogue": ["--model", "--n", "--meld-dir", "--repeats", "--no-lockstep"],
                "fusion": ["--model", "--n", "--repeats"],
                "engine_full": ["--model", "--n", "--clips", "--meld-dir", "--repeats"],
                "long_media": ["--minutes", "--windows", "--frames", "--folder"],
                "ray_scale": ["--model", "--n", "--backend", "--meld-dir"],
                "frontend": ["--clips", "--seconds", "--frames"],
                "omni": ["--omni-model", "--vl-model", "--n", "--minutes", "--windows"],
                "intake": ["--model", "--rows", "--big-rows"],
                "physio": ["--minutes", "--windows", "--window-s"],
                "reasoning": ["--model", "--n", "--reasoning-tokens"],
                "strategies_full": ["--model", "--n", "--meld-dir", "--repeats"]}[module]
    for flag in expected:
        assert flag in stdout, f"{module}: {flag} missing from --help"
