"""Decoded media kept on disk, so that re-running an evaluate, an ablation or a fusion run decodes nothing.

Entries are keyed by the file's version (path, mtime, size) and every setting that changes
what is decoded (window, frame count, rate, pixel budget, snapping); an edited file is a new
key. Frames are stored uncompressed (`.npy`, exact pixels, fast to read) with their times;
audio windows and probes (which streams a file has) are stored too, so a cached run opens
no media file at all. The folder is bounded: past `max_gb`, the least recently used
entries go first (checked at each process's first write and after every 1/20 of the bound).

Location: `$MLLM_MER_CACHE/media` (default `~/.cache/mllm-mer/media`).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from mllm_mer.media.decode import Frames


def cache_root() -> Path:
    base = os.environ.get("MLLM_MER_CACHE") or Path.home() / ".cache" / "mllm-mer"
    return Path(base) / "media"


class MediaCache:
    def __init__(self, root: Path | None = None, max_gb: float = 2.0):
        self.root, self.max_bytes = Path(root or cache_root()), int(max_gb * 1024**3)
        self._lock = threading.Lock()
        # Bytes written since the last size check; the first write of every process checks, so that
        # many short processes, each writing little, still keep the bound.
        self._written = self.max_bytes

    def _path(self, key: tuple, suffix: str) -> Path:
        digest = hashlib.sha256(repr(key).encode()).hexdigest()
        return self.root / digest[:2] / f"{digest}{suffix}"

    def has(self, key: tuple) -> bool:
        return self._path(key, ".npy").is_file()

    def get_frames(self, key: tuple):
        """The cached `Frames` for `key`, or None."""
        from PIL import Image

        meta_path = self._path(key, ".json")
        try:
            meta = json.loads(meta_path.read_text())
            pixels = np.load(self._path(key, ".npy"), allow_pickle=False)
        except (OSError, ValueError):
            return None
        os.utime(meta_path)  # recently used
        os.utime(self._path(key, ".npy"))
        return Frames(tuple(Image.fromarray(a) for a in pixels), tuple(meta["times"]), meta["fps"], meta["duration"],
                      meta["declared"], tuple(meta.get("missing", ())))

    def put_frames(self, key: tuple, frames) -> None:
        pixels = np.stack([np.asarray(image.convert("RGB")) for image in frames.images])
        self._write(self._path(key, ".npy"), lambda f: np.save(f, pixels, allow_pickle=False))
        meta = {"times": list(frames.times), "fps": frames.fps, "duration": frames.duration,
                "declared": frames.declared, "missing": list(frames.missing)}
        self._write(self._path(key, ".json"), lambda f: f.write(json.dumps(meta).encode()))
        self._note(pixels.nbytes)

    def get_array(self, key: tuple) -> np.ndarray | None:
        """A cached array (a window's waveform), or None."""
        path = self._path(key, ".npy")
        try:
            found = np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            return None
        os.utime(path)
        return found

    def put_array(self, key: tuple, array: np.ndarray) -> None:
        self._write(self._path(key, ".npy"), lambda f: np.save(f, array, allow_pickle=False))
        self._note(array.nbytes)

    def get_json(self, key: tuple) -> Any:
        try:
            return json.loads(self._path(key, ".json").read_text())
        except (OSError, ValueError):
            return None

    def put_json(self, key: tuple, value: Any) -> None:
        self._write(self._path(key, ".json"), lambda f: f.write(json.dumps(value).encode()))

    def _write(self, path: Path, write) -> None:
        """Atomically (a reader never sees half a file); a full or read-only disk only costs the cache."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as f:
                write(f)
            os.replace(f.name, path)
        except OSError:
            pass

    def _note(self, nbytes: int) -> None:
        with self._lock:
            self._written += nbytes
            if self._written < self.max_bytes // 20:
                return
            self._written = 0
        self.trim()

    def trim(self) -> None:
        """Drop the least recently used entries until the folder fits its bound."""
        entries = []
        for path in self.root.glob("*/*"):
            try:
                stat = path.stat()
            except OSError:
                continue
            entries.append((stat.st_mtime, stat.st_size, path))
        total = sum(e[1] for e in entries)
        for _, size, path in sorted(entries, key=lambda e: e[0]):
            if total <= self.max_bytes:
                break
            path.unlink(missing_ok=True)  # a frames entry missing half of itself is a miss, never a wrong hit
            total -= size


_CACHES: dict[float, MediaCache] = {}


def media_cache(max_gb: float) -> MediaCache | None:
    """The shared cache for this size bound (None when caching is off: max_gb <= 0)."""
    if max_gb <= 0:
        return None
    root = cache_root()
    cache = _CACHES.get(max_gb)
    if cache is None or cache.root != root:
        cache = _CACHES[max_gb] = MediaCache(root, max_gb)
    return cache
