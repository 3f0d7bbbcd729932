"""Predicted context in lockstep vs independent classification, on the vLLM engine, same MELD rows.

    python -m benchmarks.dialogue --model runs/small-model [--n 256] [--meld-dir ../shared/data/meld]

Text only (MELD's CSVs), label-only answers, generate mode. Independent: batches of 16, each
utterance with the dataset's context (no labels). Lockstep: turn i of every dialogue in one call,
each utterance's context labelled with the predictions for the turns before it. Prefix cache reset
before each; best of `repeats`, alternated.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from mllm_mer.config import Section, option
from mllm_mer.conversation.context import dialogues_of
from mllm_mer.core.labels import load_label_scheme
from mllm_mer.core.types import PromptSetup
from mllm_mer.datasets import load_split
from mllm_mer.pipeline import predict
from mllm_mer.pipeline.dialogue import classify_dialogues
from mllm_mer.strategies import RunContext

from .backends_for_bench import ModelBenchConfig, script_main

DEFAULT_MELD = os.environ.get("MLLM_MER_MELD_DIR", str(Path(__file__).resolve().parents[2] / "shared/data/meld"))


@dataclass
class DialogueBenchOptions(Section):
    """Rows and repeats."""

    n: int | None = option(None, "whole dialogues of MELD dev until at least N rows (default: the whole split)")
    meld_dir: str = option(DEFAULT_MELD, "folder of MELD's CSVs")
    repeats: int = option(2, "alternations of the two runs (best of each kept)")


@dataclass
class DialogueBenchConfig(ModelBenchConfig):
    bench: DialogueBenchOptions = field(default_factory=DialogueBenchOptions)


def run(vllm, n: int | None = None, meld_dir: str = DEFAULT_MELD, repeats: int = 2) -> dict:
    samples = []
    for turns in dialogues_of(load_split("meld", meld_dir, "dev").samples):
        if n is not None and len(samples) >= n:
            break
        samples += turns
    setup = PromptSetup(load_label_scheme("meld"), template="label_only", modalities=("text",))
    predict(vllm, samples[:4], setup, with_probabilities=False)  # warm-up

    def independent() -> None:
        for start in range(0, len(samples), 16):
            predict(vllm, samples[start:start + 16], setup, with_probabilities=False)

    def lockstep() -> None:
        classify_dialogues(vllm, dialogues_of(samples), RunContext(setup), "predicted", window=5)

    best = {"independent": float("inf"), "lockstep": float("inf")}
    for _ in range(repeats):
        for name, fn in (("independent", independent), ("lockstep", lockstep)):
            vllm.llm.reset_prefix_cache()
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    turns = max(len(d) for d in dialogues_of(samples))
    return {"n": len(samples), "dialogues": len(dialogues_of(samples)), "longest": turns,
            "independent_sps": len(samples) / best["independent"], "lockstep_sps": len(samples) / best["lockstep"],
            "ratio": best["independent"] / best["lockstep"]}


def report(r: dict) -> str:
    return (f"dialogue ({r['n']} MELD dev rows, {r['dialogues']} dialogues, longest {r['longest']} turns): "
            f"independent {r['independent_sps']:.2f}/s, predicted context in lockstep {r['lockstep_sps']:.2f}/s: "
            f"{r['ratio']:.2f}x the independent samples/s")


def main(argv: list[str] | None = None) -> dict:
    return script_main(__doc__, run, report, DialogueBenchConfig, needs_hf=False, argv=argv)


if __name__ == "__main__":
    main()
