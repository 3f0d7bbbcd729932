"""Few-shot (a long shared system prefix) vs zero-shot on vLLM with prefix caching.

    python -m benchmarks.prefix_cache --model runs/small-model [--n 32] [--tokens 16]
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from mllm_mer.backends.base import render
from mllm_mer.config import Section, option
from mllm_mer.core.labels import load_label_scheme
from mllm_mer.core.types import PromptSetup
from mllm_mer.pipeline import prepare

from .backends_for_bench import ModelBenchConfig, script_main
from .bench_inputs import bench_samples


@dataclass
class PrefixCacheOptions(Section):
    """Samples and answer length."""

    n: int = option(32, "samples")
    tokens: int = option(16, "tokens generated per sample (EOS ignored)")


@dataclass
class PrefixCacheConfig(ModelBenchConfig):
    bench: PrefixCacheOptions = field(default_factory=PrefixCacheOptions)


def run(vllm, n: int = 32, tokens: int = 16) -> dict:
    scheme = load_label_scheme("meld")
    samples = bench_samples(n, seed=1)
    timings, lengths = {"zero_shot": math.inf, "few_shot": math.inf}, {}
    for _ in range(2):  # alternating, best of two: neither template pays for the engine's first calls
        for template in ("zero_shot", "few_shot"):
            prompts = [p.prompt for p in prepare(samples, PromptSetup(scheme=scheme, template=template))]
            lengths[template] = len(vllm.tokenizer(render(vllm.tokenizer, prompts[0]))["input_ids"])
            vllm.llm.reset_prefix_cache()
            vllm.generate_token_ids(prompts[:1], max_new_tokens=1)  # the shared prefix enters the cache once
            start = time.perf_counter()
            vllm.generate_token_ids(prompts, max_new_tokens=tokens, ignore_eos=True)
            timings[template] = min(timings[template], time.perf_counter() - start)
    return {"n": n, "tokens": tokens, "zero_shot_s": timings["zero_shot"], "few_shot_s": timings["few_shot"],
            "zero_shot_prompt_tokens": lengths["zero_shot"], "few_shot_prompt_tokens": lengths["few_shot"],
            "ratio": timings["few_shot"] / timings["zero_shot"]}


def report(r: dict) -> str:
    return (f"prefix cache ({r['n']} samples, {r['tokens']} tokens): zero-shot {r['zero_shot_s']:.2f} s "
            f"({r['zero_shot_prompt_tokens']} prompt tokens), few-shot {r['few_shot_s']:.2f} s "
            f"({r['few_shot_prompt_tokens']} prompt tokens): cost ratio {r['ratio']:.2f}x")


def main(argv: list[str] | None = None) -> dict:
    return script_main(__doc__, run, report, PrefixCacheConfig, needs_hf=False, argv=argv)


if __name__ == "__main__":
    main()
