"""Benchmarks of mllm_mer, each a module run from the repository root:

    python -m benchmarks.run_all [--quick] [--model DIR]    # every ratio, written to benchmarks/RESULTS.md
    python -m benchmarks.media [--quick] [--seconds 30]
    python -m benchmarks.throughput --model DIR
    python -m benchmarks.scoring --model DIR
    python -m benchmarks.prefix_cache --model DIR

They use only the package's public API; their command lines are generated from the
config dataclasses beside them, by the same parser generator as `mllm-mer`'s.
"""
