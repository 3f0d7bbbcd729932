"""Predicted context (each dialogue on its own, and in lockstep) vs independent classification, on the vLLM
engine, same MELD rows.

    python -m benchmarks.dialogue --model runs/bench-small [--n 42] [--meld-dir ../shared/data/meld]

Text only (MELD's CSVs), label-only answers, generate mode (no probabilities), five earlier turns of context.
Independent: every utterance with the dataset's context (no labels), all streamed at once. Predicted context,
each dialogue on its own: a dialogue's next turn goes out the moment its previous answer has written its label
(while the rest of that answer is written), labelled with it; "waiting for whole answers": the same, sending
the next turn only once the previous answer has ended. Lockstep: turn i of every dialogue in one call. The
longest dialogue alone, with predicted context, is the chain no scheduler can shorten: it bounds the
predicted-context figure. Prefix cache reset before each; best of `repeats`, alternated.
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
from mllm_mer.pipeline.dialogue import classify_dialogues
from mllm_mer.strategies import RunContext

from .backends_for_bench import ModelBenchConfig, script_main

DEFAULT_MELD = os.environ.get("MLLM_MER_MELD_DIR", str(Path(__file__).resolve().parents[2] / "shared/data/meld"))


@dataclass
class DialogueBenchOptions(Section):
    """Rows and repeats."""

    n: int | None = option(None, "whole dialogues of MELD dev until at least N rows (default: the whole split)")
    meld_dir: str = option(DEFAULT_MELD, "folder of MELD's CSVs")
    repeats: int = option(2, "alternations of the runs (best of each kept)")
    lockstep: bool = option(True, "also time predicted context in lockstep")


@dataclass
class DialogueBenchConfig(ModelBenchConfig):
    bench: DialogueBenchOptions = field(default_factory=DialogueBenchOptions)


def run(vllm, n: int | None = None, meld_dir: str = DEFAULT_MELD, repeats: int = 2, lockstep: bool = True) -> dict:
    samples = []
    for turns in dialogues_of(load_split("meld", meld_dir, "dev").samples):
        if n is not None and len(samples) >= n:
            break
        samples += turns
    setup = PromptSetup(load_label_scheme("meld"), template="label_only", modalities=("text",))
    run_context = RunContext(setup, probabilities=False)  # the label as generated: no scoring walk
    classify_dialogues(vllm, dialogues_of(samples[:4]), run_context, "none")  # warm-up

    dialogues = dialogues_of(samples)
    longest = max(dialogues, key=len)
    # (dialogues, context labels, continuous, bets); "longest alone": the chain no scheduler can shorten
    modes = {"independent": (dialogues, "none", True, True), "continuous": (dialogues, "predicted", True, True),
             "waiting": (dialogues, "predicted", True, False), "lockstep": (dialogues, "predicted", False, False),
             "longest alone": ([longest], "predicted", True, True)}
    if not lockstep:
        del modes["lockstep"]
    best = dict.fromkeys(modes, float("inf"))
    for _ in range(repeats):
        for name, (talks, labels, continuous, bets) in modes.items():
            vllm.llm.reset_prefix_cache()
            start = time.perf_counter()
            classify_dialogues(vllm, talks, run_context, labels, window=5, continuous=continuous, prefetch=64,
                               bets=bets)
            best[name] = min(best[name], time.perf_counter() - start)
    sps = {name: len(samples) / seconds for name, seconds in best.items()}  # "longest alone": the bound
    return {"n": len(samples), "dialogues": len(dialogues), "longest": len(longest),
            "longest_alone_s": best["longest alone"], **{f"{name}_sps": sps[name] for name in modes if name in sps
                                                         and name != "longest alone"},
            "ratio": sps["continuous"] / sps["independent"], "bound": sps["longest alone"] / sps["independent"],
            "waiting_ratio": sps["waiting"] / sps["independent"],
            **({"lockstep_ratio": sps["lockstep"] / sps["independent"]} if lockstep else {})}


def report(r: dict) -> str:
    lockstep = (f", in lockstep {r['lockstep_sps']:.2f}/s ({r['lockstep_ratio']:.2f}x)" if "lockstep_ratio" in r
                else "")
    return (f"dialogue ({r['n']} MELD dev rows, {r['dialogues']} dialogues, longest {r['longest']} turns): "
            f"independent {r['independent_sps']:.2f}/s; predicted context, each dialogue on its own "
            f"{r['continuous_sps']:.2f}/s ({r['ratio']:.2f}x), waiting for whole answers {r['waiting_sps']:.2f}/s "
            f"({r['waiting_ratio']:.2f}x){lockstep}; the longest dialogue alone takes "
            f"{r['longest_alone_s']:.1f} s, which bounds predicted context at {r['bound']:.2f}x")


def main(argv: list[str] | None = None) -> dict:
    return script_main(__doc__, run, report, DialogueBenchConfig, needs_hf=False, argv=argv)


if __name__ == "__main__":
    main()
