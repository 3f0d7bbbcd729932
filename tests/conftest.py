"""Shared fixtures. Nothing here touches the network: models are built locally (mllm_mer.synthetic.tiny)."""
from __future__ import annotations

import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _give_each_worker_its_own_cores() -> None:
    """Under pytest-xdist (`-n 2` in pyproject), pin each worker, and so everything it starts (CLI runs, vLLM
    engines, browsers), to its own share of the cores: two workers' OpenMP pools on the same cores spin against
    each other, which costs more than the parallel run gains."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # gw0, gw1, ...
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not worker.startswith("gw") or count < 2 or not hasattr(os, "sched_setaffinity"):
        return
    cores = sorted(os.sched_getaffinity(0))
    share = max(1, len(cores) // count)
    index = int(worker[2:]) % count
    mine = cores[index * share:(index + 1) * share] or cores[-share:]
    os.sched_setaffinity(0, mine)
    os.environ.setdefault("OMP_NUM_THREADS", str(len(mine)))
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", ",".join(map(str, mine)))


_give_each_worker_its_own_cores()
# Caches (decoded media, retrieval indexes) of this session only, also for the CLI's subprocesses.
os.environ.setdefault("MLLM_MER_CACHE", tempfile.mkdtemp(prefix="mllm-mer-cache-"))

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MELD_DIR = Path(os.environ.get("MLLM_MER_MELD_DIR", REPO.parent / "shared" / "data" / "meld"))
# Skipped only where the folder is absent and nobody pointed at one: in CI it is there, so these run.
requires_meld = pytest.mark.skipif(not MELD_DIR.is_dir() and "MLLM_MER_MELD_DIR" not in os.environ,
                                   reason=f"MELD CSVs not found at {MELD_DIR}; set MLLM_MER_MELD_DIR")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from mllm_mer.synthetic.tiny import make_tiny

    return make_tiny(tmp_path_factory.mktemp("models") / "tiny-qwen2-vl")


@pytest.fixture(scope="session")
def meld_spec():
    from mllm_mer.core.labels import load_label_scheme

    return load_label_scheme("meld")


@pytest.fixture(scope="session")
def hf_backend(tiny_model):
    from mllm_mer.backends.hf import TransformersBackend
    from mllm_mer.config import BackendConfig, build

    backend = TransformersBackend(build(BackendConfig, model=str(tiny_model), dtype="float32", max_new_tokens=2048,
                                                forward_batch_size=16))
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def face_png(tmp_path_factory) -> Path:
    from PIL import Image

    path = tmp_path_factory.mktemp("media") / "face.png"
    Image.new("RGB", (96, 96), (200, 120, 90)).save(path)
    return path


@pytest.fixture(scope="session")
def tiny_lora(tiny_model, tmp_path_factory) -> Path:
    """A LoRA adapter on the language model only, with random (non-zero) weights so that it changes outputs."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    from mllm_mer.core.families import family_for

    model = AutoModelForImageTextToText.from_pretrained(tiny_model, dtype=torch.float32)
    torch.manual_seed(1)
    config = LoraConfig(r=8, lora_alpha=32, target_modules=family_for(tiny_model).lora_target_modules,
                        init_lora_weights=False)
    out = tmp_path_factory.mktemp("adapters") / "probe"
    get_peft_model(model, config).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def vllm_backend(tiny_model, tiny_lora):
    """One vLLM engine for the whole session (start-up is the expensive part), with the probe adapter."""
    from mllm_mer.backends.vllm_engine import VLLMEngineBackend
    from mllm_mer.config import BackendConfig, build

    backend = VLLMEngineBackend(build(BackendConfig, model=str(tiny_model), adapter=[f"probe={tiny_lora}"],
                                              dtype="float32", enforce_eager=True, max_new_tokens=2048,
                                              max_model_len=4096, kv_cache_gb=1, max_lora_rank=32))
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def colour_task(tmp_path_factory) -> Path:
    """The synthetic colour x wording task (each modality alone is worth 50%)."""
    from mllm_mer.synthetic.tasks import make_task

    return make_task(tmp_path_factory.mktemp("task") / "colour-weather").parent


def recipe_overrides(model, task, out, *extra) -> list[str]:
    return [f"model={model}", f"output_dir={out}", f"data_dir={task / 'manifest.jsonl'}",
            f"labels={task / 'labels.yaml'}", f"dataset_options={{labels: {task / 'labels.yaml'}, task: emotion}}",
            *extra]


@pytest.fixture(scope="session")
def colour_adapter(tiny_model, colour_task, tmp_path_factory) -> Path:
    """One LoRA trained on the colour x wording task through the CLI, shared by the session; returns its run dir
    (adapter/, config.yaml, dev_metrics.json, checkpoints/)."""
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("colour-lora") / "run"
    proc = subprocess.run([sys.executable, "-m", "mllm_mer.cli", "finetune", "--config",
                           "finetune/configs/tiny_lora.yaml", *recipe_overrides(tiny_model, colour_task, out)],
                          capture_output=True, text=True, timeout=900, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out
