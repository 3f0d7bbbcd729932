"""Shared fixtures. Nothing here touches the network: models are built locally (mllm_mer.tiny)."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MELD_DIR = REPO.parent / "shared" / "data" / "meld"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from mllm_mer.tiny import make_tiny

    return make_tiny(tmp_path_factory.mktemp("models") / "tiny-qwen2-vl")


@pytest.fixture(scope="session")
def meld_spec():
    from mllm_mer.labels import load_label_spec

    return load_label_spec("meld")


@pytest.fixture(scope="session")
def hf_backend(tiny_model):
    from mllm_mer.backends.hf import TransformersBackend
    from mllm_mer.config import BackendConfig

    backend = TransformersBackend(BackendConfig(model=str(tiny_model), dtype="float32", max_new_tokens=400,
                                                batch_size=16))
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def face_png(tmp_path_factory) -> Path:
    from PIL import Image

    path = tmp_path_factory.mktemp("media") / "face.png"
    Image.new("RGB", (96, 96), (200, 120, 90)).save(path)
    return path
