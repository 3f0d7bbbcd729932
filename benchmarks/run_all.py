"""Runs every benchmark with one engine and writes benchmarks/RESULTS.md.

    python benchmarks/run_all.py [--quick] [--model DIR]

Without --model it builds the `small` random checkpoint (Qwen2-0.5B text dimensions)
into runs/bench-small first. Each line of RESULTS.md is a ratio measured in this run.
"""
from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import media  # noqa: E402
import prefix_cache  # noqa: E402
import scoring  # noqa: E402
import throughput  # noqa: E402
from backends_for_bench import add_model_args, load_hf, load_vllm  # noqa: E402
from common import machine  # noqa: E402


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(parser, required=False)
    parser.add_argument("--quick", action="store_true", help="fewer samples and repeats (under 10 minutes)")
    parser.add_argument("--n", type=int, help="samples per model benchmark (default 32, 16 with --quick)")
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--media-seconds", type=float, default=30.0)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "RESULTS.md"))
    args = parser.parse_args(argv)
    n = args.n or (16 if args.quick else 32)
    if args.model is None:
        from mllm_mer.tiny import make_tiny

        args.model = str(Path("runs/bench-small"))
        if not (Path(args.model) / "config.json").is_file():
            make_tiny(args.model, size="small")

    results = {"media": media.run(args.media_seconds, repeats=1 if args.quick else 3)}
    hf = load_hf(args)
    vllm = load_vllm(args)
    try:
        results["throughput"] = throughput.run(hf, vllm, n, args.tokens)
        del hf
        results["scoring"] = scoring.run(vllm, n)
        results["prefix"] = prefix_cache.run(vllm, n, max(4, args.tokens // 2))
    finally:
        vllm.close()

    t, s, p, m = results["throughput"], results["scoring"], results["prefix"], results["media"]
    rows = [
        ("vLLM engine vs per-sample transformers loop", f"{t['vllm_vs_loop']:.1f}x", ">= 6x", throughput.report(t)),
        ("vLLM engine vs batched transformers", f"{t['vllm_vs_batched']:.1f}x", "", ""),
        ("label scoring vs generate-with-rationale", f"{s['ratio']:.1f}x", ">= 3x", scoring.report(s)),
        ("few-shot cost / zero-shot cost (prefix cache)", f"{p['ratio']:.2f}x", "<= 1.3x", prefix_cache.report(p)),
        ("8 sampled frames vs decode everything, 2 s GOP", f"{m['gop2s']['ratio_snapped']:.1f}x", ">= 5x",
         media.report(m, "gop2s", "2 s GOP")),
        ("same, exact times (--keyframe-snap 0)", f"{m['gop2s']['ratio']:.1f}x", "", ""),
        ("8 sampled frames vs decode everything, 250-frame GOP", f"{m['gop250']['ratio_snapped']:.1f}x", "",
         media.report(m, "gop250", "250-frame GOP")),
        ("same, exact times (--keyframe-snap 0)", f"{m['gop250']['ratio']:.1f}x", "", ""),
    ]
    lines = ["# Benchmark results", "",
             f"{datetime.date.today().isoformat()}, {machine()}, model `{args.model}` ({args.dtype}), "
             f"{'quick' if args.quick else 'full'} run, {n} samples.", "",
             "| measure | ratio | target |", "|---|---|---|"]
    lines += [f"| {name} | {ratio} | {target} |" for name, ratio, target, _ in rows]
    lines += ["", "Details:", ""] + [f"- {detail}" for *_, detail in rows if detail]
    out = Path(args.out)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return out


if __name__ == "__main__":
    main()
