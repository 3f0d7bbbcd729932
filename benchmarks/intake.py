"""Reading a corpus as released: `mllm-mer inspect` time on a 10k-row manifest, and peak memory of
`inspect` and `evaluate --limit 100` on a 200k-row one against the same commands on 100 rows (what the
big manifest costs beyond the model's own).

Every measure runs the CLI as a user types it, in a fresh process (`datasets` converts a new file to
Arrow once; each file here is new to it).

    python -m benchmarks.intake --model TINY [--rows 10000] [--big-rows 200000]
"""
from __future__ import annotations

import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from mllm_mer.config import Section, option

from .common import bench_main

WORDS = ("you", "did", "what", "never", "again", "fine", "okay", "wow", "really", "no", "yes", "please")
LABELS = ("neutral", "joy", "sadness", "anger", "surprise", "fear", "disgust")


@dataclass
class IntakeOptions(Section):
    model: str | None = option(None, "checkpoint for the evaluate runs (e.g. a tiny one from make-tiny)")
    rows: int = option(10_000, "rows of the manifest inspect is timed on")
    big_rows: int = option(200_000, "rows of the big manifest (memory)")


@dataclass
class IntakeBenchConfig:
    bench: IntakeOptions = field(default_factory=IntakeOptions)


def write_manifest(path: Path, rows: int, seed: int = 0) -> Path:
    """Dialogues of 10 turns, a text, a speaker and a gold label per row, plus 6 columns nobody reads."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        f.write("id,dialogue,speaker,text,label,season,episode,start,end,notes,source\n")
        for i in range(rows):
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 14)))
            f.write(f"u{i},d{i // 10},{rng.choice('AB')},{text},{rng.choice(LABELS)},1,{i % 24},0,1,-,web\n")
    return path


PEAK = "peak-rss-kib:"
# The CLI in this process, then its own peak RSS (each measure is one fresh process, nothing shared).
WRAPPER = ("import resource, runpy, sys\n"
           "sys.argv = ['mllm-mer', *sys.argv[1:]]\n"
           "try:\n    runpy.run_module('mllm_mer.cli', run_name='__main__')\n"
           "finally:\n    print('" + PEAK + "', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n")


def _run(args: list[str]) -> tuple[float, float]:
    """(seconds, peak RSS of the command's process in MiB)."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", WRAPPER, *args], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"mllm-mer {args[0]} failed: {proc.stderr[-2000:]}")
    kib = next(line.split()[-1] for line in reversed(proc.stderr.splitlines()) if line.startswith(PEAK))
    return seconds, int(kib) / 1024


def run(model: str | None = None, rows: int = 10_000, big_rows: int = 200_000) -> dict:
    if not model:
        raise ValueError("--model is required (e.g. mllm-mer make-tiny runs/tiny)")
    common = ["--dataset", "manifest", "--labels", "meld", "--task", "emotion", "--model", model]
    result: dict = {"rows": rows, "big_rows": big_rows}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        small = write_manifest(folder / "small.csv", 100, seed=1)
        medium = write_manifest(folder / "medium.csv", rows, seed=2)
        big = write_manifest(folder / "big.csv", big_rows, seed=3)
        result["inspect_s"], _ = _run(["inspect", *common, "--data-dir", str(medium)])
        _, result["inspect_small_mib"] = _run(["inspect", *common, "--data-dir", str(small)])
        _, result["inspect_big_mib"] = _run(["inspect", *common, "--data-dir", str(big)])
        evaluate = ["evaluate", *common, "--mode", "score", "--template", "label_only", "--limit", "100"]
        _, result["evaluate_small_mib"] = _run([*evaluate, "--data-dir", str(small), "--out", str(folder / "r1")])
        _, result["evaluate_big_mib"] = _run([*evaluate, "--data-dir", str(big), "--out", str(folder / "r2")])
    result["evaluate_extra_mib"] = result["evaluate_big_mib"] - result["evaluate_small_mib"]
    return result


def report(r: dict) -> str:
    return (f"intake: inspect of {r['rows']} rows {r['inspect_s']:.2f} s (process start included); peak RSS of "
            f"inspect {r['inspect_small_mib']:.0f} MiB on 100 rows, {r['inspect_big_mib']:.0f} MiB on "
            f"{r['big_rows']} rows; evaluate --limit 100 {r['evaluate_small_mib']:.0f} MiB on 100 rows, "
            f"{r['evaluate_big_mib']:.0f} MiB on {r['big_rows']} rows ({r['evaluate_extra_mib']:+.0f} MiB)")


def main(argv: list[str] | None = None) -> dict:
    return bench_main(IntakeBenchConfig, __doc__, run, report, argv)


if __name__ == "__main__":
    main()
