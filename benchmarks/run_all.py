"""Runs every benchmark with one engine and writes benchmarks/RESULTS.md.

    python -m benchmarks.run_all [--quick] [--model DIR]

Without --model it builds the `small` random checkpoint (Qwen2-0.5B text dimensions)
into runs/bench-small first. Each line of RESULTS.md is a ratio measured in this run.
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass, field, replace
from pathlib import Path

from mllm_mer.config import Section, option

from . import agent, dialogue, fusion, media, prefix_cache, reasoning, scoring, throughput
from .backends_for_bench import ModelBenchConfig, load_hf, load_vllm
from .common import BENCH_DIR, machine, parse_config


@dataclass
class RunAllOptions(Section):
    """How much to measure, and where the table goes."""

    quick: bool = option(False, "fewer samples and repeats (under 10 minutes)")
    n: int | None = option(None, "samples per model benchmark (default 32, 16 with --quick)")
    tokens: int = option(32, "tokens generated per sample (the prefix-cache benchmark uses half, at least 4)")
    media_seconds: float = option(30.0, "length of the media benchmark's generated clips, in seconds")
    out: str | None = option(None, "where the Markdown table is written (default benchmarks/RESULTS.md)")
    thinking_model: str | None = option(None, "thinking checkpoint of the reasoning-order benchmark (default: the "
                                              "small random one, built into runs/bench-small-thinking)")


@dataclass
class RunAllConfig(ModelBenchConfig):
    bench: RunAllOptions = field(default_factory=RunAllOptions)


def main(argv: list[str] | None = None) -> Path:
    cfg = parse_config(RunAllConfig, __doc__, argv)
    options = cfg.bench
    n = options.n or (16 if options.quick else 32)
    if cfg.model.model is None:
        from mllm_mer.synthetic.tiny import make_tiny

        cfg.model.model = str(Path("runs/bench-small"))
        if not (Path(cfg.model.model) / "config.json").is_file():
            make_tiny(cfg.model.model, size="small")

    results = {"media": media.run(options.media_seconds, repeats=1 if options.quick else 3)}
    hf = load_hf(cfg)
    vllm = load_vllm(cfg)
    with vllm:  # the engine (and its worker processes) closed on exit
        results["throughput"] = throughput.run(hf, vllm, n, options.tokens)
        del hf
        results["scoring"] = scoring.run(vllm, n)
        results["prefix"] = prefix_cache.run(vllm, n, max(4, options.tokens // 2))
        results["agent"] = agent.run(vllm, n, repeats=1 if options.quick else 2)
        results["fusion"] = fusion.run(vllm, n, repeats=1 if options.quick else 2)
        if Path(dialogue.DEFAULT_MELD).is_dir():  # MELD's CSVs (set MLLM_MER_MELD_DIR)
            results["dialogue"] = dialogue.run(vllm, 2 * n, repeats=1 if options.quick else 2)
    thinking = replace(cfg, model=replace(cfg.model, model=reasoning.thinking_checkpoint(options.thinking_model)))
    with reasoning.load_counting(thinking) as engine:  # native reasoning needs a thinking checkpoint
        results["reasoning"] = reasoning.run(engine, thinking.model.model, n, 2 * options.tokens)

    t, s, p, m, a = (results[k] for k in ("throughput", "scoring", "prefix", "media", "agent"))
    rows = [
        ("vLLM engine vs per-sample transformers loop", f"{t['vllm_vs_loop']:.1f}x", ">= 6x", throughput.report(t)),
        ("vLLM engine vs batched transformers", f"{t['vllm_vs_batched']:.1f}x", "", ""),
        ("label scoring vs generate-with-rationale", f"{s['ratio']:.1f}x", ">= 3x", scoring.report(s)),
        ("few-shot cost / zero-shot cost (prefix cache)", f"{p['ratio']:.2f}x", "<= 1.3x", prefix_cache.report(p)),
        ("agent (max 3 steps) time / single-pass time", f"{a['agent_cost']:.2f}x", "<= 3x", agent.report(a)),
        ("retrieved template (k=4) time / zero-shot time", f"{a['retrieved_cost']:.2f}x", "<= 1.5x", ""),
        ("fusion (3 experts + joint) time / single-pass scoring time", f"{results['fusion']['cost']:.2f}x", "<= 2x",
         fusion.report(results["fusion"])),
        ("predicted-context samples/s (each dialogue on its own) / independent", f"{results['dialogue']['ratio']:.2f}x"
         if "dialogue" in results else "n/a (no MELD)", ">= 0.7x",
         dialogue.report(results["dialogue"]) if "dialogue" in results else ""),
        *reasoning.rows(results["reasoning"]),
        ("8 sampled frames vs decode everything, 2 s GOP", f"{m['gop2s']['ratio_snapped']:.1f}x", ">= 5x",
         media.report(m, "gop2s", "2 s GOP")),
        ("same, exact times (--keyframe-snap 0)", f"{m['gop2s']['ratio']:.1f}x", "", ""),
        ("8 sampled frames vs decode everything, 250-frame GOP", f"{m['gop250']['ratio_snapped']:.1f}x", "",
         media.report(m, "gop250", "250-frame GOP")),
        ("same, exact times (--keyframe-snap 0)", f"{m['gop250']['ratio']:.1f}x", "", ""),
    ]
    lines = ["# Benchmark results", "",
             f"{datetime.date.today().isoformat()}, {machine()}, model `{cfg.model.model}` ({cfg.model.dtype}), "
             f"{'quick' if options.quick else 'full'} run, {n} samples.", "",
             "| measure | ratio | target |", "|---|---|---|"]
    lines += [f"| {name} | {ratio} | {target} |" for name, ratio, target, _ in rows]
    lines += ["", "Details:", ""] + [f"- {detail}" for *_, detail in rows if detail]
    out = Path(options.out) if options.out else BENCH_DIR / "RESULTS.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return out


if __name__ == "__main__":
    main()
