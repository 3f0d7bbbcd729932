"""Environment the CPU build of vLLM reads at start; applied explicitly by whoever starts an engine."""
from __future__ import annotations

import os


def cpu_engine_env(kv_cache_gb: int) -> dict[str, str]:
    """Environment the CPU build of vLLM reads at start (GPU builds ignore it)."""
    env = {"VLLM_CPU_KVCACHE_SPACE": str(kv_cache_gb)}  # KV cache size in GiB
    if (os.cpu_count() or 1) <= 8:
        # vLLM keeps one core for its front end by default: on a small machine that halves
        # the compute (measured: 2 cores, prefill 12.5 s -> 6.6 s with both).
        env["VLLM_CPU_NUM_OF_RESERVED_CPU"] = "0"
    return env


def apply_cpu_engine_env(kv_cache_gb: int) -> None:
    """Set the CPU engine's variables in this process (spawned engine workers inherit them).

    Values the user already exported win.
    """
    for name, value in cpu_engine_env(kv_cache_gb).items():
        os.environ.setdefault(name, value)


# vLLM's level unless asked for more: its start on CPU warns about a dozen settings it chose by itself (no
# GPU, no pinned memory, the attention backend, ...), none of them the user's doing; errors still show.
QUIET_LEVEL = "ERROR"


def log_level(verbose: bool) -> str:
    """The engine's log level: everything with `--engine-log`, else errors only."""
    return "INFO" if verbose else QUIET_LEVEL


def apply_log_level(verbose: bool) -> None:
    """vLLM's own logging: errors only unless asked; `--engine-log` wins over any exported level, and an
    exported level wins over the quiet default."""
    if verbose:
        os.environ["VLLM_LOGGING_LEVEL"] = log_level(True)
    else:
        os.environ.setdefault("VLLM_LOGGING_LEVEL", QUIET_LEVEL)
