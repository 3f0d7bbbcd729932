"""Samples/s of batch prompting: a per-sample transformers loop, transformers batched, the vLLM engine.

Same checkpoint, same prompts (one 224x224 frame + transcript + context), same
output length (fixed, EOS ignored). Prints (c)/(a) and (c)/(b).

    python benchmarks/throughput.py --model runs/small-model [--n 32] [--tokens 32]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_inputs import bench_samples  # noqa: E402

from mllm_mer.config import PromptConfig  # noqa: E402
from mllm_mer.labels import load_label_spec  # noqa: E402
from mllm_mer.pipeline import prepare  # noqa: E402


def prompts_for(n: int):
    spec = load_label_spec("meld")
    return [p.prompt for p in prepare(bench_samples(n), spec, PromptConfig(template="zero_shot"))]


def run(hf, vllm, n: int = 32, tokens: int = 32) -> dict:
    prompts = prompts_for(n)
    hf.generate_token_ids(prompts[:2], max_new_tokens=2)  # warm-up
    vllm.generate_token_ids(prompts[:2], max_new_tokens=2)
    start = time.perf_counter()
    for p in prompts:
        hf.generate_token_ids([p], max_new_tokens=tokens, ignore_eos=True)
    loop = time.perf_counter() - start
    start = time.perf_counter()
    for i in range(0, n, hf.config.batch_size):
        hf.generate_token_ids(prompts[i:i + hf.config.batch_size], max_new_tokens=tokens, ignore_eos=True)
    batched = time.perf_counter() - start
    start = time.perf_counter()
    out = vllm.generate_token_ids(prompts, max_new_tokens=tokens, ignore_eos=True)
    engine = time.perf_counter() - start
    assert all(len(ids) == tokens for ids in out)
    return {"n": n, "tokens": tokens, "hf_loop_sps": n / loop, "hf_batched_sps": n / batched,
            "vllm_sps": n / engine, "vllm_vs_loop": loop / engine, "vllm_vs_batched": batched / engine}


def report(r: dict) -> str:
    return (f"throughput ({r['n']} samples, {r['tokens']} tokens each): transformers loop {r['hf_loop_sps']:.2f}/s, "
            f"transformers batched {r['hf_batched_sps']:.2f}/s, vLLM {r['vllm_sps']:.2f}/s; "
            f"vLLM/loop {r['vllm_vs_loop']:.1f}x, vLLM/batched {r['vllm_vs_batched']:.1f}x")


if __name__ == "__main__":
    from backends_for_bench import script_main

    script_main(__doc__, run, report, needs_hf=True, n=32, tokens=32)
