"""Backends behind one small protocol (base.Backend); each is imported only when chosen."""
from __future__ import annotations

from mllm_mer.backends.base import Backend
from mllm_mer.config import BackendConfig

BACKENDS = ("transformers", "vllm", "openai")


def load_backend(config: BackendConfig) -> Backend:
    if config.model.backend == "transformers":
        from mllm_mer.backends.hf import TransformersBackend
        return TransformersBackend(config)
    if config.model.backend == "vllm":
        from mllm_mer.backends.vllm_engine import VLLMEngineBackend
        return VLLMEngineBackend(config)
    if config.model.backend == "openai":
        from mllm_mer.backends.openai_client import OpenAIBackend
        return OpenAIBackend(config)
    raise ValueError(f"unknown backend {config.model.backend!r}; choose from {', '.join(BACKENDS)}")
