"""Bounding what runs leave on disk: old outputs of the app, and the shared memory and IPC sockets a
killed vLLM engine leaves behind (a clean shutdown removes its own; SIGKILL cannot)."""
from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
import time
from pathlib import Path

# vLLM names its ZeroMQ IPC sockets `<tmp>/<uuid4>` and its shared-memory ring buffers `/dev/shm/psm_*`.
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _size(path: Path) -> int:
    if path.is_file() or path.is_symlink():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() or p.is_symlink())


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def prune(folder: str | Path, max_age_s: float, max_bytes: int, keep: tuple[Path, ...] = ()) -> list[Path]:
    """Remove the entries (files or whole folders) of `folder` older than `max_age_s`, then the oldest
    until the rest fit in `max_bytes`; entries in `keep` stay. Returns what was removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    now, entries = time.time(), []
    for path in folder.iterdir():
        try:
            entries.append((path.lstat().st_mtime, _size(path), path))
        except OSError:  # removed meanwhile
            continue
    entries.sort(key=lambda e: e[0])
    kept = {p.resolve() for p in keep}
    total, removed = sum(e[1] for e in entries), []
    for mtime, size, path in entries:
        if path.resolve() in kept or (now - mtime <= max_age_s and total <= max_bytes):
            continue
        _remove(path)
        total -= size
        removed.append(path)
    return removed


def _held_paths() -> set[str]:
    """Files some live process has open or mapped (Linux /proc)."""
    held: set[str] = set()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            held.update(line.split(maxsplit=5)[5].strip() for line in (proc / "maps").read_text().splitlines()
                        if line.count(" ") >= 5 and "/" in line)
            held.update(os.readlink(fd) for fd in (proc / "fd").iterdir())
        except (OSError, IndexError):  # gone, or another user's
            continue
    return held


def _bound_sockets() -> set[str]:
    """Paths of the Unix sockets that exist in the kernel (a socket file without one is stale)."""
    try:
        lines = Path("/proc/net/unix").read_text().splitlines()[1:]
    except OSError:
        return set()
    return {parts[7] for parts in (line.split() for line in lines) if len(parts) >= 8}


def _stale_candidates(folder: Path, wanted, min_age_s: float) -> list[Path]:
    """This user's entries of `folder` that `wanted(path, stat)` picks, untouched for `min_age_s`."""
    if not folder.is_dir():
        return []
    found, cutoff, uid = [], time.time() - min_age_s, os.getuid()
    for path in folder.iterdir():
        try:
            info = path.lstat()
        except OSError:
            continue
        if info.st_uid == uid and info.st_mtime < cutoff and wanted(path, info):
            found.append(path)
    return found


def sweep_engine_leftovers(shm: str | Path = "/dev/shm", tmp: str | Path | None = None,
                           min_age_s: float = 0.0) -> list[Path]:
    """Remove vLLM's shared-memory files that no live process holds and its IPC socket files that no
    socket is bound to: what an engine killed with SIGKILL left. Returns what was removed.

    No age is needed to spare files another engine is creating right now: a shared-memory file is
    created already open (shm_open), and a socket file already bound, by its creating process. So the
    folders are listed first and the holders read after: whatever was listed and is still held shows
    up as held, and a file no live process holds can only be a dead one's, however new."""
    removed = []
    memory = _stale_candidates(Path(shm), lambda p, s: p.name.startswith("psm_") and stat.S_ISREG(s.st_mode),
                               min_age_s)
    if memory:
        held = _held_paths()
        removed += [p for p in memory if str(p) not in held]
    sockets = _stale_candidates(Path(tmp or tempfile.gettempdir()),
                                lambda p, s: _UUID.fullmatch(p.name) is not None and stat.S_ISSOCK(s.st_mode),
                                min_age_s)
    if sockets:
        bound = _bound_sockets()
        removed += [p for p in sockets if str(p) not in bound]
    for path in removed:
        path.unlink(missing_ok=True)
    return removed
