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
from helpers import REPO, recipe_overrides, run_cli  # noqa: E402

# The heaviest test files (minutes each, as `--durations` shows), started first: with `--dist loadfile` the two
# workers then end together on the stream of small files, where a long file picked last kept one worker busy
# minutes after the other was done. A stale list only costs balance, never a result.
HEAVY_FIRST = ("test_grpo.py", "test_distill.py", "test_reasoning_training.py", "test_finetune.py",
               "test_process_hygiene.py", "test_omni.py", "test_ray.py", "test_benchmarks.py", "test_serve.py",
               "test_evaluate.py", "test_physio.py", "test_dialogue.py", "test_agent.py", "test_fusion.py",
               "test_faithfulness.py", "test_user_defects.py", "test_app.py")


def pytest_collection_modifyitems(items):
    def rank(item):
        tier = item.path.parent.name  # integration, browser, unit
        if item.path.name in HEAVY_FIRST and tier == "integration":
            return HEAVY_FIRST.index(item.path.name)
        return len(HEAVY_FIRST) + (tier == "unit")

    items.sort(key=rank)  # stable: tests keep their order within a file, and files theirs within a rank


def built_once(tmp_path_factory, name: str, build) -> Path:
    """`build(folder)` run once per test run, not once per xdist worker: the workers share the folder (read only
    after it is built); the first to ask builds it under a lock, the others wait and reuse it."""
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    root = root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root  # the workers' common folder
    folder, done = root / f"shared-{name}", root / f"shared-{name}.done"
    with FileLock(str(root / f"shared-{name}.lock")):
        if not done.is_file():
            build(folder)
            done.touch()
    return folder


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from mllm_mer.synthetic.tiny import make_tiny

    return built_once(tmp_path_factory, "tiny-qwen2-vl", make_tiny)


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

    return built_once(tmp_path_factory, "colour-task", lambda root: make_task(root / "colour-weather")) / \
        "colour-weather"


@pytest.fixture(scope="session")
def colour_adapter(tiny_model, colour_task, tmp_path_factory) -> Path:
    """One LoRA trained on the colour x wording task through the CLI, shared by the whole run; returns its run dir
    (adapter/, config.yaml, dev_metrics.json, checkpoints/)."""
    def train(out):
        run_cli("finetune", "--config", "finetune/configs/tiny_lora.yaml",
                *recipe_overrides(tiny_model, colour_task, out), timeout=900, cwd=REPO)

    return built_once(tmp_path_factory, "colour-lora", train)


@pytest.fixture(scope="module")
def app_url(tiny_model, vllm_backend, tmp_path_factory):
    """The Gradio app on the tiny checkpoint and the session's vLLM engine, served on a free port."""
    from mllm_mer.app.service import Service
    from mllm_mer.app.ui import build_demo, launch
    from mllm_mer.config import AppConfig, build
    from mllm_mer.serving.vllm_server import free_port

    config = build(AppConfig, model=str(tiny_model), backend="vllm", max_frames=4, max_new_tokens=2048,
                   runs_dir=str(tmp_path_factory.mktemp("app-runs")), port=free_port(), max_upload_mb=20)
    service = Service(config, backend=vllm_backend)
    demo = build_demo(service)
    _, url, _ = launch(demo, service, prevent_thread_lock=True, quiet=True)
    yield url
    demo.close()


@pytest.fixture(scope="session")
def app_clip(tmp_path_factory) -> Path:
    """A short clip with sound, as a user uploads it to the app."""
    from mllm_mer.synthetic.media import write_clip

    return write_clip(tmp_path_factory.mktemp("app-media") / "clip.mp4", seconds=1.5, fps=8, tone_hz=300)


@pytest.fixture(scope="session")
def app_talk(tmp_path_factory) -> tuple[Path, Path]:
    """A recording of a three-cue conversation and its subtitles."""
    from helpers import SRT

    from mllm_mer.synthetic.media import write_clip

    root = tmp_path_factory.mktemp("talk")
    (root / "talk.srt").write_text(SRT)
    return write_clip(root / "talk.mp4", seconds=4.0, fps=8, tone_hz=220), root / "talk.srt"


@pytest.fixture
def guarded(monkeypatch):
    """The serve guard keyed with GUARD_KEY, in front of a recorder: (recorder, guard)."""
    from helpers import GUARD_KEY, AsgiRecorder

    from mllm_mer.serving.server_guard import GuardMiddleware

    monkeypatch.setenv("VLLM_API_KEY", GUARD_KEY)
    monkeypatch.delenv("MLLM_MER_ALLOW_REMOTE_MEDIA", raising=False)
    recorder = AsgiRecorder()
    return recorder, GuardMiddleware(recorder)
