"""The three answer orders on the vLLM engine, same prompts, one engine: `none` (the answer first),
`before` (a prompted <reasoning> block) and `native` (the checkpoint's own think block).

    python -m benchmarks.reasoning [--model THINKING_DIR] [--n 16] [--reasoning-tokens 64]

Without --model it builds the `small` random thinking checkpoint (`make-tiny --size small --thinking`)
into runs/bench-small-thinking. Per order: samples/s over the whole answer (reasoning, the answer after
it, its label probabilities), tokens generated per sample, and what label scoring after the reasoning
costs next to generating the reasoning, with the prefix-cache hit rate of that scoring pass (vLLM's
own counters: the reasoned prompt should come from the cache).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from mllm_mer.config import PromptConfig, Section, option
from mllm_mer.core.labels import load_label_scheme
from mllm_mer.core.types import PromptSetup
from mllm_mer.pipeline import prepare, score_labels
from mllm_mer.pipeline.resolve import reasoning_for
from mllm_mer.stages.reasoning import reason
from mllm_mer.stages.scoring import generate_predictions

from .backends_for_bench import ModelBenchConfig, load_vllm
from .bench_inputs import bench_samples
from .common import machine, parse_config

ORDERS = ("none", "before", "native")
DEFAULT_MODEL = "runs/bench-small-thinking"


@dataclass
class ReasoningOptions(Section):
    """Samples and the reasoning bound."""

    n: int = option(16, "samples (the same prompts for every order)")
    reasoning_tokens: int = option(64, "bound of each reasoning block in tokens (--max-reasoning-tokens)", low=1)


@dataclass
class ReasoningBenchConfig(ModelBenchConfig):
    bench: ReasoningOptions = field(default_factory=ReasoningOptions)


def thinking_checkpoint(model: str | None) -> str:
    """The thinking checkpoint to load: the one given, else the small random one (built once)."""
    if model:
        return model
    if not (Path(DEFAULT_MODEL) / "config.json").is_file():
        from mllm_mer.synthetic.tiny import make_tiny

        make_tiny(DEFAULT_MODEL, size="small", thinking=True)
    return DEFAULT_MODEL


def load_counting(cfg: ModelBenchConfig):
    """The vLLM engine with its statistics on (the prefix-cache counters live there)."""
    engine = replace(cfg.engine, engine_args={**cfg.engine.engine_args, "disable_log_stats": False})
    return load_vllm(replace(cfg, engine=engine))


def prefix_counters(vllm) -> tuple[float, float]:
    """(prompt tokens looked up in the prefix cache, tokens found there) so far, over every engine."""
    queries = hits = 0.0
    for metric in vllm.llm.get_metrics():
        if metric.name == "vllm:prefix_cache_queries":
            queries += metric.value
        elif metric.name == "vllm:prefix_cache_hits":
            hits += metric.value
    return queries, hits


def one_order(vllm, samples, setup: PromptSetup) -> dict:
    """The stages of one order on a cold prefix cache, each timed: reasoning, the answer, its label scoring."""
    prompts = [p.prompt for p in prepare(samples, setup)]
    vllm.llm.reset_prefix_cache()
    times = {}
    start = time.perf_counter()
    reasoned = reason(vllm, prompts)  # `none`: the prompts as they are
    times["reason_s"] = time.perf_counter() - start
    if any(isinstance(r, Exception) for r in reasoned):
        refused = next(r for r in reasoned if isinstance(r, Exception))
        raise RuntimeError(f"the engine refused a reasoning request: {refused}")
    start = time.perf_counter()
    answers = generate_predictions(vllm, reasoned)
    times["answer_s"] = time.perf_counter() - start
    queries, hits = prefix_counters(vllm)
    start = time.perf_counter()
    score_labels(vllm, reasoned)
    times["score_s"] = time.perf_counter() - start
    queries_after, hits_after = prefix_counters(vllm)
    thought = sum(p.thought.tokens for p in reasoned if p.thought is not None)
    answer = sum(len(vllm.tokenizer(a.raw or "", add_special_tokens=False)["input_ids"]) for a in answers)
    n = len(samples)
    total = sum(times.values())
    return {**times, "samples_per_s": n / total, "reasoning_tokens": thought / n, "answer_tokens": answer / n,
            "score_mode_samples_per_s": n / (times["reason_s"] + times["score_s"]),  # labels only, no answer text
            "tokens_per_sample": (thought + answer) / n, "answered": sum(a.ok for a in answers),
            "cut": sum(bool(p.thought and p.thought.cut) for p in reasoned),
            "score_hit_rate": (hits_after - hits) / (queries_after - queries) if queries_after > queries else None}


def run(vllm, model: str, n: int = 16, reasoning_tokens: int = 64) -> dict:
    scheme = load_label_scheme("meld")
    setups = {order: PromptSetup(scheme=scheme, reasoning=reasoning_for(
        PromptConfig(reasoning=order, max_reasoning_tokens=reasoning_tokens), model)) for order in ORDERS}
    warm = bench_samples(1, seed=7)
    for setup in setups.values():  # the engine's first calls of each kind, untimed
        one_order(vllm, warm, setup)
    samples = bench_samples(n, seed=3)
    orders = {order: one_order(vllm, samples, setup) for order, setup in setups.items()}
    return {"n": n, "bound": reasoning_tokens, "orders": orders,
            "slowdown": {o: orders["none"]["samples_per_s"] / orders[o]["samples_per_s"] for o in ORDERS[1:]},
            "score_vs_reason": {o: orders[o]["score_s"] / orders[o]["reason_s"] for o in ORDERS[1:]}}


def report(r: dict) -> str:
    parts = []
    for order, m in r["orders"].items():
        rate = "-" if m["score_hit_rate"] is None else f"{m['score_hit_rate']:.0%}"
        reasoning = (f"reasoning {m['reason_s']:.2f} s ({m['reasoning_tokens']:.0f} tokens, {m['cut']} cut), "
                     if order != "none" else "")
        parts.append(f"{order}: {m['samples_per_s']:.2f}/s ({m['score_mode_samples_per_s']:.2f}/s in score mode), "
                     f"{m['tokens_per_sample']:.0f} tokens/sample; "
                     f"{reasoning}answer {m['answer_s']:.2f} s ({m['answer_tokens']:.0f} tokens), label scoring "
                     f"{m['score_s']:.2f} s (prefix-cache hits {rate})")
    return (f"reasoning orders ({r['n']} samples, bound {r['bound']} tokens): " + "; ".join(parts)
            + "; label scoring after the reasoning costs " + ", ".join(
                f"{r['score_vs_reason'][o]:.2f}x the reasoning's time ({o})" for o in ORDERS[1:]))


def rows(r: dict) -> list[tuple[str, str, str, str]]:
    """run_all's rows: (measure, ratio, target, detail)."""
    return [("`--reasoning before` time / answer-first time (same prompts)", f"{r['slowdown']['before']:.2f}x", "",
             report(r)),
            ("`--reasoning native` time / answer-first time (thinking checkpoint)", f"{r['slowdown']['native']:.2f}x",
             "", ""),
            ("label scoring after reasoning / generating the reasoning (before)",
             f"{r['score_vs_reason']['before']:.2f}x", "", "")]


def main(argv: list[str] | None = None) -> dict:
    import dataclasses

    cfg = parse_config(ReasoningBenchConfig, __doc__, argv)
    cfg.model.model = thinking_checkpoint(cfg.model.model)
    print(f"machine: {machine()}")
    with load_counting(cfg) as vllm:  # the engine (and its worker processes) closed on exit
        result = run(vllm, cfg.model.model, **dataclasses.asdict(cfg.bench))
        print(report(result))
    return result


if __name__ == "__main__":
    main()
