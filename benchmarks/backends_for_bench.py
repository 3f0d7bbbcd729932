"""Loading the backends the model benchmarks compare, from common arguments."""
from __future__ import annotations

import argparse

from mllm_mer.config import BackendConfig


def add_model_args(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("--model", required=required, help="checkpoint (mllm-mer make-tiny DIR --size small)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--batch-size", type=int, default=8, help="transformers batch size")
    parser.add_argument("--kv-cache-gb", type=int, default=4)


def engine_config(args) -> BackendConfig:
    return BackendConfig(model=args.model, backend="vllm", dtype=args.dtype, enforce_eager=False,
                         max_model_len=4096, kv_cache_gb=args.kv_cache_gb, max_new_tokens=1024)


def load_hf(args):
    from mllm_mer.backends.hf import TransformersBackend

    return TransformersBackend(BackendConfig(model=args.model, dtype=args.dtype, batch_size=args.batch_size,
                                             max_new_tokens=1024))


def load_vllm(args):
    from mllm_mer.backends.vllm_engine import VLLMEngineBackend

    return VLLMEngineBackend(engine_config(args))


def load_both(args):
    return load_hf(args), load_vllm(args)


def script_main(doc: str, run, report, needs_hf: bool, **defaults) -> None:
    """The command line shared by the model benchmarks: load the backends, run, print the ratio line."""
    from common import machine

    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(parser)
    for name, value in defaults.items():
        parser.add_argument(f"--{name}", type=type(value), default=value)
    args = parser.parse_args()
    backends = ([load_hf(args)] if needs_hf else []) + [load_vllm(args)]
    print(f"machine: {machine()}")
    try:
        print(report(run(*backends, **{k: getattr(args, k) for k in defaults})))
    finally:
        backends[-1].close()
