"""What runs leave on disk stays bounded: app outputs by age and size, the media cache by every process,
and the shared memory and IPC sockets of killed vLLM engines swept (live ones untouched)."""
import mmap
import os
import socket
import tempfile
import time
import uuid
import zipfile
from pathlib import Path

import numpy as np
import pytest

from mllm_mer.core.housekeeping import prune, sweep_engine_leftovers


def _aged(path, hours):
    past = time.time() - hours * 3600
    os.utime(path, (past, past), follow_symlinks=False)
    return path


def test_prune_drops_old_entries_then_the_oldest_past_the_size_bound(tmp_path):
    old = tmp_path / "batch-old"
    old.mkdir()
    (old / "predictions.jsonl").write_bytes(b"x" * 100)
    _aged(old, 30)
    sized = []
    for hours in (3, 2, 1):
        path = tmp_path / f"analysis-{hours}.json"
        path.write_bytes(b"y" * 400)
        sized.append(_aged(path, hours))
    kept = tmp_path / "keep-me.json"
    kept.write_bytes(b"z")
    _aged(kept, 40)
    removed = prune(tmp_path, max_age_s=24 * 3600, max_bytes=900, keep=(kept,))
    assert set(removed) == {old, sized[0]}  # too old; then the oldest until 800 bytes fit in 900
    assert sorted(p.name for p in tmp_path.iterdir()) == ["analysis-1.json", "analysis-2.json", "keep-me.json"]


def test_a_killed_engines_shared_memory_and_sockets_go_and_live_ones_stay(tmp_path):
    shm = tmp_path / "shm"
    shm.mkdir()
    # A socket's path must fit in 108 bytes: pytest's per-worker temporary folders can be longer.
    tmp = Path(tempfile.mkdtemp(prefix="hk-", dir="/tmp"))
    dead_memory, live_memory = shm / "psm_dead01", shm / "psm_live01"
    for path in (dead_memory, live_memory):
        path.write_bytes(b"\0" * 4096)
    fresh_memory = shm / "psm_fresh1"
    fresh_memory.write_bytes(b"\0" * 4096)
    dead_socket, live_socket = tmp / str(uuid.uuid4()), tmp / str(uuid.uuid4())
    gone = socket.socket(socket.AF_UNIX)
    gone.bind(str(dead_socket))
    gone.close()  # the file stays, as after SIGKILL
    listening = socket.socket(socket.AF_UNIX)
    listening.bind(str(live_socket))
    listening.listen()
    other = tmp / "notes.txt"
    other.write_text("not vLLM's")
    with open(live_memory, "r+b") as f, mmap.mmap(f.fileno(), 4096):
        for path in (dead_memory, live_memory, dead_socket, live_socket, other):
            _aged(path, 1)
        removed = sweep_engine_leftovers(shm, tmp, min_age_s=60)
    listening.close()
    assert set(removed) == {dead_memory, dead_socket}
    assert live_memory.exists() and fresh_memory.exists() and live_socket.exists() and other.exists()


def test_the_media_cache_keeps_its_bound_even_when_each_process_writes_little(tmp_path):
    from mllm_mer.media.frame_cache import MediaCache

    bound_gb = 1 / 1024  # 1 MiB
    for i in range(3):  # 3 MiB left by earlier processes
        MediaCache(tmp_path, max_gb=100).put_array(("earlier", i), np.zeros(1024 * 1024 // 8))
    for i in range(5):  # each a new process's first and only write
        MediaCache(tmp_path, max_gb=bound_gb).put_array(("short", i), np.zeros(1000))
    total = sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file())
    assert total <= 1024 * 1024
    assert MediaCache(tmp_path).get_array(("short", 4)) is not None  # the newest stayed


def test_the_app_removes_old_outputs_and_a_refused_batch_leaves_nothing(tmp_path):
    from mllm_mer.app.service import Service
    from mllm_mer.config import AppConfig, build

    runs = tmp_path / "runs"
    service = Service(build(AppConfig, model="unused", runs_dir=str(runs), keep_hours=1))
    (runs / "analyses").mkdir(parents=True)
    old_batch, new_batch = runs / "batch-old", runs / "batch-new"
    old_batch.mkdir()
    new_batch.mkdir()
    _aged(old_batch, 2)
    old_analysis = runs / "analyses" / "prediction-old.json"
    old_analysis.write_text("{}")
    _aged(old_analysis, 2)
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("notes.txt", "no manifest here")
    with pytest.raises(ValueError, match="exactly one .csv or .jsonl manifest"):
        service.run_batch(str(bad), None, "emotion", None)
    assert sorted(p.name for p in runs.iterdir()) == ["analyses", "batch-new"]
    assert not old_analysis.exists()


def test_gradio_deletes_the_apps_uploads_after_the_apps_own_keep_time(tmp_path):
    from mllm_mer.app.service import Service
    from mllm_mer.app.ui import build_demo
    from mllm_mer.config import AppConfig, build

    service = Service(build(AppConfig, model="unused", runs_dir=str(tmp_path / "runs"), keep_hours=2))
    assert build_demo(service).delete_cache == (3600, 7200)  # checked hourly, uploads older than 2 h removed
