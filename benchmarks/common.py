"""Shared bits of the benchmarks: the command line, the machine line and timing."""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from mllm_mer.cli.args import add_config_arguments, config_from_namespace, reject_unknown, split_overrides
from mllm_mer.config import ConfigError, to_flat

BENCH_DIR = Path(__file__).resolve().parent
C = TypeVar("C")


def parse_config(cls: type[C], description: str | None, argv: list[str] | None = None,
                 required: tuple[str, ...] = ()) -> C:
    """A benchmark's config from its command line: flags generated from `cls` (as `mllm-mer`'s are),
    `--config FILE.yaml` and `key=value` words. `required` names leaves that must be set."""
    parser = argparse.ArgumentParser(prog=f"python -m {_module_name(cls)}", description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser, cls)
    namespace, rest = parser.parse_known_args(argv)
    overrides, rest = split_overrides(rest)
    try:
        if rest:
            reject_unknown(rest, parser)
        config = config_from_namespace(cls, namespace, overrides)
    except (ConfigError, FileNotFoundError, TypeError, ValueError) as error:
        parser.error(str(error))
    values = to_flat(config)
    for name in required:
        if values[name] is None:
            parser.error(f"--{name.replace('_', '-')} is required")
    guard()
    return config


def guard() -> None:
    """As for the CLI's verbs: SIGTERM exits through `finally:`, and a watchdog stops any engine this
    process started once it is gone (kill -9 included)."""
    from mllm_mer.serving.process_guard import exit_on_sigterm, start_guard

    exit_on_sigterm()
    start_guard()


def _module_name(cls: type) -> str:
    """The benchmark's module as `python -m` runs it (where it is `__main__`)."""
    if cls.__module__ == "__main__":
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        return spec.name if spec else "benchmarks"
    return cls.__module__


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {os.cpu_count()} cores, {gpu}, torch {torch.__version__}"


@contextmanager
def timer(result: dict, key: str):
    start = time.perf_counter()
    yield
    result[key] = time.perf_counter() - start


def best_of(fn, repeats: int = 3, setup=None) -> float:
    """The fastest of `repeats` calls of `fn`; `setup`, if given, runs untimed before each."""
    times = []
    for _ in range(repeats):
        if setup is not None:
            setup()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_main(cls: type, doc: str | None, run, report, argv: list[str] | None = None,
               required: tuple[str, ...] = ()) -> dict:
    """The command line of a benchmark that loads no backend itself: its `bench` options go to `run`,
    and the machine line and `report(result)` are printed."""
    import dataclasses

    cfg = parse_config(cls, doc, argv, required=required)
    print(f"machine: {machine()}")
    result = run(**dataclasses.asdict(cfg.bench))
    print(report(result))
    return result
