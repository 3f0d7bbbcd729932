"""One-pass label scoring vs generate-with-rationale, on the vLLM engine, same samples.

    python benchmarks/scoring.py --model runs/small-model [--n 32]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from throughput import prompts_for  # noqa: E402

from mllm_mer.pipeline import run_prompts  # noqa: E402


def run(vllm, n: int = 32) -> dict:
    prompts = prompts_for(n)
    run_prompts(vllm, prompts[:2], "score")  # warm-up
    start = time.perf_counter()
    scored = run_prompts(vllm, prompts, "score")
    t_score = time.perf_counter() - start
    start = time.perf_counter()
    generated = run_prompts(vllm, prompts, "generate", with_probabilities=False)
    t_generate = time.perf_counter() - start
    tokens = sum(len(vllm.tokenizer(p.raw or "")["input_ids"]) for p in generated) / n
    return {"n": n, "score_sps": n / t_score, "generate_sps": n / t_generate, "ratio": t_generate / t_score,
            "generated_tokens_mean": tokens, "all_ok": all(p.ok for p in scored + generated)}


def report(r: dict) -> str:
    return (f"scoring ({r['n']} samples): label scoring {r['score_sps']:.2f}/s, generate with rationale "
            f"{r['generate_sps']:.2f}/s ({r['generated_tokens_mean']:.0f} tokens/answer): ratio {r['ratio']:.1f}x")


if __name__ == "__main__":
    from backends_for_bench import script_main

    script_main(__doc__, run, report, needs_hf=False, n=32)
