"""No engine outlives the command that started it.

Two halves:
- `exit_on_sigterm()`: SIGTERM becomes a normal exit, so `finally:` blocks close engines
  (Python's default on SIGTERM is to die on the spot, skipping them).
- `start_guard()`: a small watchdog process in its own session that keeps a recent list of
  this process's descendants (vLLM engine cores, workers, a `serve` child) and, once this
  process is gone for any reason, kill -9 included, stops every one of them, and every
  process that inherited one of this process's two marks (one started between two polls,
  orphaned before the watchdog saw it): the `MLLM_MER_GUARDED` variable, which children
  started by exec carry (kept visible when they rename themselves: SPT_NOENV), and the write end of
  a pipe, which forked children carry: a variable set after start-up is not in a forked child's
  /proc environ.

    python -m mllm_mer.serving.process_guard PID START_TIME [PIPE_INODE]   (what start_guard runs)
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

POLL_S = 0.5
GRACE_S = 5.0
_MARK_FDS: list[int] = []  # the pipe this process and its forked children hold open (the fork mark)


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit(143) in the main thread."""

    def _exit(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)


def start_guard() -> subprocess.Popen | None:
    """Start the watchdog for this process (once); None where psutil is missing."""
    try:
        import psutil
    except ImportError:
        return None
    if os.environ.get("MLLM_MER_GUARDED") == str(os.getpid()):
        return None
    inode = mark_this_process()
    born = psutil.Process().create_time()  # so a watchdog that starts after this process died still sweeps
    return subprocess.Popen([sys.executable, "-m", "mllm_mer.serving.process_guard", str(os.getpid()), repr(born),
                             str(inode)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def mark_this_process() -> int:
    """Give this process's descendants the two marks the watchdog knows them by; returns the pipe's inode."""
    os.environ["MLLM_MER_GUARDED"] = str(os.getpid())
    # A process title set with setproctitle (vLLM names its engine core so) overwrites the memory that
    # /proc/PID/environ shows, and the variable with it, unless SPT_NOENV keeps the title to argv's length.
    os.environ.setdefault("SPT_NOENV", "1")
    _MARK_FDS.extend(os.pipe())  # close-on-exec: forked children keep it, exec'd ones carry the variable
    return os.fstat(_MARK_FDS[1]).st_ino


def _watch(pid: int, born: float, pipe: int | None = None) -> None:
    import psutil

    me = os.getpid()
    known: dict[int, psutil.Process] = {}
    try:
        parent = psutil.Process(pid)
    except psutil.NoSuchProcess:  # killed before this watchdog started: sweep what carries its mark
        _stop(known, pid, born, me, pipe)
        return
    while True:
        try:
            if not parent.is_running() or parent.status() == psutil.STATUS_ZOMBIE:
                break
            for child in parent.children(recursive=True):
                if child.pid != me:
                    known.setdefault(child.pid, child)
        except psutil.NoSuchProcess:
            break
        known = {p: proc for p, proc in known.items() if proc.is_running()}
        time.sleep(POLL_S)
    _stop(known, pid, born, me, pipe)


def _stop(known: dict, pid: int, born: float, me: int, pipe: int | None = None) -> None:
    """The parent is gone: whatever it started and left behind goes too (is_running checks the
    start time, so a reused pid is never hit)."""
    import psutil

    known.update({proc.pid: proc for proc in _marked(str(pid), born, me, pipe)})
    alive = [proc for proc in known.values() if proc.is_running()]
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.terminate()
    _, alive = psutil.wait_procs(alive, timeout=GRACE_S)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()


def _marked(pid: str, born: float, me: int, pipe: int | None = None) -> list:
    """Processes started after the parent that carry one of its marks (its descendants, orphaned or not)."""
    import psutil

    found = []
    for proc in psutil.process_iter(["create_time"]):
        if proc.pid == me or (proc.info["create_time"] or 0) < born:
            continue
        with contextlib.suppress(psutil.Error, OSError):
            if proc.environ().get("MLLM_MER_GUARDED") == pid or (pipe is not None and _holds(proc.pid, pipe)):
                found.append(proc)
    return found


def _holds(pid: int, inode: int) -> bool:
    """Whether process `pid` has the pipe `inode` open (a forked child of the guarded process)."""
    fds, mark = f"/proc/{pid}/fd", f"pipe:[{inode}]"
    for fd in os.listdir(fds):
        with contextlib.suppress(OSError):  # closed since the listing
            if os.readlink(f"{fds}/{fd}") == mark:
                return True
    return False


if __name__ == "__main__":
    _watch(int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else None)
