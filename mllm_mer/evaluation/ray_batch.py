"""Batch prompting on a Ray cluster: the split as a Ray Dataset, answered by a pool of backend actors.

Media decoding and prompt building run as CPU tasks (`map_batches` over a function); the
answering runs on an actor pool of `replicas` actors, each holding one backend (the vLLM
engine with its adapters, or transformers) with the resources asked for: GPUs per replica,
or a fraction of a CPU on a CPU node (on 2 cores, actors that each take a whole CPU starve
the read and decode tasks and the pipeline stalls). Records stream back to the driver as
each batch finishes; `evaluate` appends them to predictions.jsonl at once, so the resume
rules are those of a local run: rows already in the file are never submitted, and a killed
driver loses only the batches in flight.

    pip install "mllm-mer[ray]"; mllm-mer evaluate ... --engine ray --replicas 4 [--ray-address auto]
"""
from __future__ import annotations

import json
import os
import pickle
from collections.abc import Iterator, Sequence
from typing import Any

from mllm_mer.config import BackendConfig, ScaleConfig
from mllm_mer.core.types import PromptSetup, Sample
from mllm_mer.evaluation.records import record_for
from mllm_mer.pipeline.answer import answer_prepared
from mllm_mer.stages.prepare import prepare
from mllm_mer.strategies import RunContext


def _prepare(batch: dict[str, Any], samples: Sequence[Sample], setup: PromptSetup) -> dict[str, Any]:
    """CPU task: media and prompt for a batch of sample indices (pickled: frames are PIL images)."""
    prepared = prepare([samples[int(i)] for i in batch["index"]], setup)
    return {"prepared": [pickle.dumps(p) for p in prepared]}


class _Answerer:
    """One replica: a backend loaded once, answering prepared batches into predictions.jsonl records."""

    def __init__(self, backend: BackendConfig, run: RunContext):
        from mllm_mer.pipeline.build import open_backend

        self.backend, self.run = open_backend(backend), run  # held for the actor's life

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        prepared = [pickle.loads(p) for p in batch["prepared"]]
        answered = answer_prepared(self.backend, prepared, self.run)
        return {"record": [json.dumps(record_for(p.sample, a.prediction, a.prompt, self.run.setup.modalities),
                                      ensure_ascii=False) for p, a in zip(prepared, answered, strict=True)]}


def connect(scale: ScaleConfig) -> bool:
    """Join the cluster at `ray_address`, or start a local one; True when this call started it."""
    import ray

    if ray.is_initialized():
        return False
    threads = str(os.cpu_count() or 1)
    # Ray gives each worker OMP_NUM_THREADS = its (whole) CPUs, 1 for a fractional actor: the engine's
    # own threads would then compute on one core. The node's cores go to the engine as in a local run.
    ray.init(address=scale.ray_address, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": threads, "TOKENIZERS_PARALLELISM": "false",
                                       "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "0")}})
    return True


def answer_on_ray(backend: BackendConfig, samples: Sequence[Sample], run: RunContext, scale: ScaleConfig,
                  batch_size: int) -> Iterator[list[dict[str, Any]]]:
    """predictions.jsonl records for `samples`, a batch at a time as the replicas finish them."""
    try:
        import ray
    except ImportError:
        raise ValueError("--engine ray needs Ray: pip install 'mllm-mer[ray]'") from None
    if not samples:
        return
    started = connect(scale)
    try:
        gpus = scale.replica_gpus
        if gpus is None:
            import torch

            gpus = 1.0 if torch.cuda.is_available() else 0.0
        indices = ray.data.from_items([{"index": i} for i in range(len(samples))],
                                      override_num_blocks=max(1, min(len(samples) // batch_size, 64)))
        prepared = indices.map_batches(_prepare, fn_kwargs={"samples": list(samples), "setup": run.setup},
                                       batch_size=batch_size, num_cpus=scale.task_cpus)
        answered = prepared.map_batches(
            _Answerer, fn_constructor_kwargs={"backend": backend, "run": run},
            batch_size=batch_size, concurrency=scale.replicas, num_cpus=scale.replica_cpus, num_gpus=gpus)
        for batch in answered.iter_batches(batch_size=None, batch_format="numpy"):
            yield [json.loads(r) for r in batch["record"]]
    finally:
        if started:
            ray.shutdown()
