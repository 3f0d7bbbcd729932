"""`evaluate --engine ray --replicas 1` against the in-process run, as a user runs both (the CLI).

    python -m benchmarks.ray_scale --model runs/bench-small [--n 40] [--backend vllm]

MELD test rows, text only, label-only answers. Each command is run over N and 2N rows; the
difference is the cost of N rows once everything is up (the engine's overhead), the rest is
the fixed start-up (Ray's local cluster, the actor, the engine). Both are reported.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from mllm_mer.config import Section, option

from .common import bench_main
from .dialogue import DEFAULT_MELD


@dataclass
class RayScaleOptions(Section):
    """Model, rows and backend."""

    model: str | None = option(None, "checkpoint directory (mllm-mer make-tiny DIR --size small)")
    n: int = option(40, "MELD test rows (each command also runs 2N)")
    backend: Literal["vllm", "transformers"] = option("vllm", "the backend each side runs")
    meld_dir: str = option(DEFAULT_MELD, "folder of MELD's CSVs")


@dataclass
class RayScaleConfig:
    bench: RayScaleOptions = field(default_factory=RayScaleOptions)


def _wall(model: str, n: int, backend: str, meld_dir: str, extra: list[str]) -> float:
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "mllm_mer.cli", "evaluate", "--model", model, "--backend", backend,
                   "--dataset", "meld", "--data-dir", meld_dir, "--split", "test", "--limit", str(n),
                   "--modalities", "text", "--template", "label_only", "--out", str(Path(out) / "run"), *extra]
        if backend == "vllm":
            command += ["--enforce-eager", "--max-model-len", "4096"]
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, timeout=3600)
        return time.perf_counter() - start


def run(model: str, n: int = 40, backend: str = "vllm", meld_dir: str = DEFAULT_MELD) -> dict:
    found: dict = {"n": n, "backend": backend}
    for name, extra in (("local", []), ("ray", ["--engine", "ray", "--replicas", "1"])):
        small, large = (_wall(model, k, backend, meld_dir, extra) for k in (n, 2 * n))
        found[f"{name}_marginal_s"] = large - small
        found[f"{name}_startup_s"] = small - (large - small)
    found["ratio"] = found["ray_marginal_s"] / found["local_marginal_s"]
    return found


def report(r: dict) -> str:
    return (f"Ray, 1 replica vs in process ({r['n']} more MELD test rows, {r['backend']}, once up): "
            f"{r['ray_marginal_s']:.1f} s vs {r['local_marginal_s']:.1f} s ({r['ratio']:.2f}x); fixed start-up "
            f"{r['ray_startup_s']:.0f} s vs {r['local_startup_s']:.0f} s")


def main(argv: list[str] | None = None) -> dict:
    return bench_main(RayScaleConfig, __doc__, run, report, argv, required=("model",))


if __name__ == "__main__":
    main()
