"""Backends behind one small protocol (base.Backend); each is imported only when chosen (core.registry)."""
from __future__ import annotations

from mllm_mer.backends.base import Backend
from mllm_mer.config import BackendConfig
from mllm_mer.core.registry import BACKENDS as REGISTERED
from mllm_mer.core.registry import load_entry, lookup

BACKENDS = tuple(REGISTERED)


def load_backend(config: BackendConfig) -> Backend:
    return load_entry(lookup(REGISTERED, config.model.backend, "backend"))(config)
