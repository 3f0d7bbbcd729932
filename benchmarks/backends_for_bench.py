"""The model benchmarks' shared config and command line: which checkpoint, which engine, and loading both backends.

Each model benchmark declares its own options section (`bench`) and composes it with
the sections here; the flags come from these dataclasses, through the package's own
parser generator (`mllm_mer.cli.args`).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from mllm_mer.config import BackendConfig, EngineConfig, ModelConfig, Section, build, option

from .common import machine, parse_config


def _same_help(section: type, name: str, default):
    """A field of a package section with the benchmarks' own default (its help is written once, there)."""
    return option(default, next(f for f in dataclasses.fields(section) if f.name == name).metadata["help"])


@dataclass
class BenchModel(Section):
    """The checkpoint both backends load."""

    model: str | None = option(None, "checkpoint directory (mllm-mer make-tiny DIR --size small)")
    dtype: Literal["float32", "bfloat16"] = option("float32", "weights dtype")
    forward_batch_size: int = _same_help(ModelConfig, "forward_batch_size", 8)


@dataclass
class BenchEngine(EngineConfig):
    """The vLLM engine (as mllm-mer's, with the benchmarks' defaults)."""

    max_model_len: int = _same_help(EngineConfig, "max_model_len", 4096)
    kv_cache_gb: int = _same_help(EngineConfig, "kv_cache_gb", 4)


@dataclass
class ModelBenchConfig:
    """The sections every model benchmark shares; each adds its own `bench` section."""

    model: BenchModel = field(default_factory=BenchModel)
    engine: BenchEngine = field(default_factory=BenchEngine)


def backend_config(cfg: ModelBenchConfig, backend: str) -> BackendConfig:
    return build(BackendConfig, model=cfg.model.model, backend=backend, dtype=cfg.model.dtype,
                 forward_batch_size=cfg.model.forward_batch_size, max_new_tokens=1024,
                 **dataclasses.asdict(cfg.engine))


def load_hf(cfg: ModelBenchConfig):
    from mllm_mer.pipeline.build import open_backend

    return open_backend(backend_config(cfg, "transformers"))


def load_vllm(cfg: ModelBenchConfig):
    from mllm_mer.pipeline.build import open_backend

    return open_backend(backend_config(cfg, "vllm"))


def script_main(doc: str | None, run: Callable[..., dict], report: Callable[[dict], str],
                config: type[ModelBenchConfig], needs_hf: bool, argv: list[str] | None = None) -> dict:
    """The command line shared by the model benchmarks: load the backends, run with the `bench`
    options, print the ratio line."""
    cfg = parse_config(config, doc, argv, required=("model",))
    backends = ([load_hf(cfg)] if needs_hf else []) + [load_vllm(cfg)]
    print(f"machine: {machine()}")
    with backends[-1]:  # the vLLM engine (and its worker processes) closed on exit
        result = run(*backends, **dataclasses.asdict(cfg.bench))  # type: ignore[attr-defined]
        print(report(result))
    return result
