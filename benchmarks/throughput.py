"""Samples/s of batch prompting: a per-sample transformers loop, transformers batched, the vLLM engine.

Same checkpoint, same prompts (one 224x224 frame + transcript + context), same
output length (fixed, EOS ignored). Prints (c)/(a) and (c)/(b).

    python -m benchmarks.throughput --model runs/small-model [--n 32] [--tokens 32]
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from mllm_mer.config import Section, option
from mllm_mer.core.labels import load_label_scheme
from mllm_mer.core.types import PromptSetup
from mllm_mer.pipeline import prepare

from .backends_for_bench import ModelBenchConfig, script_main
from .bench_inputs import bench_samples


@dataclass
class ThroughputOptions(Section):
    """Samples and answer length."""

    n: int = option(32, "samples")
    tokens: int = option(32, "tokens generated per sample (EOS ignored)")


@dataclass
class ThroughputConfig(ModelBenchConfig):
    bench: ThroughputOptions = field(default_factory=ThroughputOptions)


def prompts_for(n: int):
    setup = PromptSetup(scheme=load_label_scheme("meld"), template="zero_shot")
    return [p.prompt for p in prepare(bench_samples(n), setup)]


def run(hf, vllm, n: int = 32, tokens: int = 32) -> dict:
    prompts = prompts_for(n)
    hf.generate_token_ids(prompts[:2], max_new_tokens=2)  # warm-up
    vllm.generate_token_ids(prompts[:2], max_new_tokens=2)
    start = time.perf_counter()
    for p in prompts:
        hf.generate_token_ids([p], max_new_tokens=tokens, ignore_eos=True)
    loop = time.perf_counter() - start
    start = time.perf_counter()
    batch = hf.config.model.forward_batch_size
    for i in range(0, n, batch):
        hf.generate_token_ids(prompts[i:i + batch], max_new_tokens=tokens, ignore_eos=True)
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


def main(argv: list[str] | None = None) -> dict:
    return script_main(__doc__, run, report, ThroughputConfig, needs_hf=True, argv=argv)


if __name__ == "__main__":
    main()
