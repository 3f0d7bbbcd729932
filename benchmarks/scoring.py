"""One-pass label scoring vs generate-with-rationale, on the vLLM engine, same samples.

    python -m benchmarks.scoring --model runs/small-model [--n 32]
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from mllm_mer.config import Section, option
from mllm_mer.pipeline import run_prompts

from .backends_for_bench import ModelBenchConfig, script_main
from .throughput import prompts_for


@dataclass
class ScoringOptions(Section):
    """Samples."""

    n: int = option(32, "samples")


@dataclass
class ScoringConfig(ModelBenchConfig):
    bench: ScoringOptions = field(default_factory=ScoringOptions)


def run(vllm, n: int = 32) -> dict:
    prompts = prompts_for(n)
    run_prompts(vllm, prompts_for(n + 2)[n:], "score")  # warm-up on other samples

    def cold(fn) -> float:
        vllm.llm.reset_prefix_cache()  # each method pays for its own prompts
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    t_prefill = cold(lambda: vllm.generate_token_ids(prompts, max_new_tokens=1))
    scored, generated = [], []
    t_score = cold(lambda: scored.extend(run_prompts(vllm, prompts, "score")))
    t_generate = cold(lambda: generated.extend(run_prompts(vllm, prompts, "generate", with_probabilities=False)))
    tokens = sum(len(vllm.tokenizer(p.raw or "")["input_ids"]) for p in generated) / n
    return {"n": n, "score_sps": n / t_score, "generate_sps": n / t_generate, "ratio": t_generate / t_score,
            "prefill_s": t_prefill, "score_s": t_score, "generate_s": t_generate, "ceiling": t_generate / t_prefill,
            "generated_tokens_mean": tokens, "all_ok": all(p.ok for p in scored + generated)}


def report(r: dict) -> str:
    return (f"scoring ({r['n']} samples, cold prefix cache): label scoring {r['score_s']:.1f} s, generate with "
            f"rationale {r['generate_s']:.1f} s ({r['generated_tokens_mean']:.0f} tokens/answer): ratio "
            f"{r['ratio']:.1f}x; prompt prefill alone, which both pay, {r['prefill_s']:.1f} s, so no scoring "
            f"method can exceed {r['ceiling']:.1f}x here")


def main(argv: list[str] | None = None) -> dict:
    return script_main(__doc__, run, report, ScoringConfig, needs_hf=False, argv=argv)


if __name__ == "__main__":
    main()
