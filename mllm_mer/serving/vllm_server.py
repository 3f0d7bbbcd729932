"""Runs vLLM's OpenAI-compatible server for a base model and its LoRA adapters.

Binds 127.0.0.1 by default, waits until /health answers, and stops the whole
process group (API server and engine workers) on exit, so nothing is orphaned.
The server module is started directly: the CPU distribution has no `vllm serve` script.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path

import httpx

from mllm_mer.config import ServeConfig
from mllm_mer.core.families import family_for, resolve_model
from mllm_mer.core.types import ServiceError
from mllm_mer.serving.adapter_prompts import ENV as PROMPTS_ENV
from mllm_mer.serving.adapter_prompts import adapter_prompts
from mllm_mer.serving.server_guard import GuardMiddleware


def served_base_name(config: ServeConfig) -> str:
    """The model name clients use (default: the model's directory or hub-id name)."""
    return config.server.served_name or Path(config.model.model.rstrip("/")).name


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def load_factor() -> float:
    """How many times slower than idle this machine runs now: runnable processes per core, at least 1."""
    try:
        return max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))
    except OSError:
        return 1.0


def teardown_allowance_s() -> int:
    """Seconds an engine may take to release its memory and exit after its last answer."""
    return int(60 * load_factor())


# Lines of an engine's log that say why it failed; the wrappers that only say that it failed are not causes.
_CAUSE = re.compile(r"(Error|Exception|error:|Killed|out of memory|No such file|not supported)")
_WRAPPER = re.compile(r"(WorkerProc initialization failed|Engine core initialization failed|See root cause above|"
                      r"failed to start\.?$|^Traceback|^(File \"|raise |\^))")
# What vLLM puts before a message: the process (`(Worker pid=7)`), then level, time and source.
_PREFIX = re.compile(r"^(\(\w+ pid=\d+\)\s*)?((DEBUG|INFO|WARNING|ERROR|CRITICAL) [\d-]+ [\d:.]+ \[[^\]]*\]\s*)?")


def start_failure_cause(lines: list[str], limit: int = 6) -> list[str]:
    """The engine's own error lines, last ones first kept, without vLLM's wrappers: what a failed start
    prints so that "WorkerProc initialization failed" never comes alone."""
    causes: list[str] = []
    for line in reversed(lines):
        text = _PREFIX.sub("", re.sub(r"\x1b\[[0-9;]*m", "", line).strip()).strip()
        if text and _CAUSE.search(text) and not _WRAPPER.search(text) and text not in causes:
            causes.append(text)
        if len(causes) == limit:
            break
    return causes[::-1]


def server_command(config: ServeConfig, extra_args: list[str] | None = None) -> list[str]:
    """The server's command line; `extra_args` are vLLM server flags passed through unchanged.

    The API key is not on it (it would show in `ps`): `Server.start` passes it in the environment.
    """
    model, engine, server = config.model, config.engine, config.server
    model_id = resolve_model(model.model)
    family = family_for(model_id)  # fail early on an unsupported model
    media_limits = {"image": engine.max_images, "video": server.max_videos,
                    **({"audio": family.max_audios} if family.hears_audio else {})}
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model_id,
           "--served-model-name", served_base_name(config), "--host", server.host, "--port", str(server.port),
           "--max-model-len", str(engine.max_model_len), "--enable-prefix-caching",
           "--limit-mm-per-prompt", json.dumps(media_limits),
           # A clip arrives as the frames the client sampled, with their rate in media_io_kwargs (the
           # guard lets through that one setting and refuses every other per-request media setting).
           "--trust-request-mm-kwargs",
           "--structured-outputs-config", json.dumps({"backend": "xgrammar", "disable_any_whitespace": True}),
           "--tensor-parallel-size", str(engine.tensor_parallel_size), "--seed", str(model.seed),
           # vLLM's default (0) kills its engine process at once on SIGTERM, leaving shared memory for the
           # resource tracker to warn about. This bound is also how long vLLM waits for the engine to exit
           # before it force-kills it: the drain plus a teardown allowance that grows with the machine's load
           # (an upper bound, not a wait: an idle engine exits at once).
           "--shutdown-timeout", str(server.drain_s + teardown_allowance_s()),
           # every route keyed, media inline only, n and max_tokens capped; vLLM imports it by this path
           "--middleware", f"{GuardMiddleware.__module__}.{GuardMiddleware.__qualname__}"]
    if family.video_processor_kwargs and "mm_processor_kwargs" not in engine.engine_args:
        cmd += ["--mm-processor-kwargs", json.dumps(dict(family.video_processor_kwargs))]
    if engine.data_parallel_size > 1:
        cmd += ["--data-parallel-size", str(engine.data_parallel_size)]
    if model.dtype != "auto":
        cmd += ["--dtype", model.dtype]
    else:
        import torch

        if not torch.cuda.is_available():
            cmd += ["--dtype", "float32"]
    if engine.enforce_eager:
        cmd.append("--enforce-eager")
    if model.adapters:
        cmd += ["--enable-lora", "--max-lora-rank", str(engine.max_lora_rank),
                "--max-loras", str(len(model.adapters)), "--lora-modules"]
        cmd += [f"{name}={path}" for name, path in model.adapters.items()]
    for key, value in engine.engine_args.items():
        flag = "--" + str(key).replace("_", "-")
        cmd += [flag] if value is True else [flag, json.dumps(value) if isinstance(value, (dict, list)) else str(value)]
    return cmd + list(extra_args or [])


class Server:
    """A running server; a context manager that always stops it."""

    def __init__(self, config: ServeConfig, extra_args: list[str] | None = None):
        if config.server.port == 0:
            config.server.port = free_port(config.server.host)
        self.config = config
        self.extra_args = list(extra_args or [])
        self.url = f"http://{config.server.host}:{config.server.port}"
        self.process: subprocess.Popen | None = None
        self._recent: deque[str] = deque(maxlen=400)  # the server's last lines when they go to this terminal

    def start(self) -> Server:
        from mllm_mer.backends.vllm_env import QUIET_LEVEL, cpu_engine_env
        from mllm_mer.core.housekeeping import sweep_engine_leftovers

        sweep_engine_leftovers()  # what servers killed earlier left in /dev/shm and the temp folder

        env = {**cpu_engine_env(self.config.engine.kv_cache_gb), "VLLM_LOGGING_LEVEL": QUIET_LEVEL, **os.environ}
        if self.config.engine.engine_log:  # asked for on the command line: wins over an exported level
            env["VLLM_LOGGING_LEVEL"] = "INFO"
        if self.config.server.api_key:
            env["VLLM_API_KEY"] = self.config.server.api_key  # read by vLLM's server; not in `ps`
        env[PROMPTS_ENV] = json.dumps(adapter_prompts(self.config.model.adapters))  # served by the guard
        if self.config.server.allow_remote_media:
            env["MLLM_MER_ALLOW_REMOTE_MEDIA"] = "1"
        limits = self.config.server  # read by the guard in the server's process (server_guard, request_limits)
        env.update(MLLM_MER_MAX_BODY_MB=str(limits.max_body_mb), MLLM_MER_MAX_SCHEMA_KB=str(limits.max_schema_kb),
                   MLLM_MER_MAX_ENUM=str(limits.max_enum), MLLM_MER_MAX_PROMPTS=str(limits.max_prompts))
        log_file = self.config.server.log_file
        # A new session: the server and its engine workers share one process group to stop together.
        with open(log_file, "ab") if log_file else contextlib.nullcontext(subprocess.PIPE) as out:
            self.process = subprocess.Popen(server_command(self.config, self.extra_args), env=env, stdout=out,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        if not log_file:  # shown as before, and its last lines kept to say why a start failed
            threading.Thread(target=self._relay, args=(self.process.stdout,), name="vllm-server-output",
                             daemon=True).start()
        self._wait_healthy()
        return self

    def _relay(self, stream) -> None:
        for raw in iter(stream.readline, b""):
            self._recent.append(raw.decode("utf-8", errors="replace"))
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.write(self._recent[-1])
                sys.stderr.flush()

    def _last_lines(self) -> list[str]:
        log_file = self.config.server.log_file
        if not log_file:
            time.sleep(0.5)  # the relay's last lines
            return list(self._recent)
        try:
            with open(log_file, "rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - (1 << 17)))
                return f.read().decode("utf-8", errors="replace").splitlines()
        except OSError:
            return []

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.config.server.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                cause = start_failure_cause(self._last_lines())
                raise ServiceError(f"vLLM server exited with code {self.process.returncode} while starting"
                                   + (": " + " | ".join(cause) if cause else "")
                                   + (f"; see {self.config.server.log_file}" if self.config.server.log_file else ""))
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        self.stop()
        raise TimeoutError(f"vLLM server at {self.url} not healthy after {self.config.server.startup_timeout_s:.0f} s")

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the server alone, which stops its engine processes in order (a signal to the whole group
        would kill them under it mid-teardown); wait for the server, then for its engine processes, to exit,
        each within a bound that grows with the machine's load; only what outlives that is killed."""
        if self.process is None or self.process.poll() is not None:
            return
        pgid = os.getpgid(self.process.pid)
        bound = (timeout + self.config.server.drain_s + teardown_allowance_s()) * load_factor()
        self.process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(bound)
        wait_group_gone(pgid, bound)  # the engine releases its memory after the server has gone
        with contextlib.suppress(ProcessLookupError):  # anything of the group still alive (engine workers) goes too
            os.killpg(pgid, signal.SIGKILL)
        self.process.wait()

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def wait_group_gone(pgid: int, bound: float) -> bool:
    """Wait until no process of group `pgid` is left (True), at most `bound` seconds (False)."""
    import psutil

    def alive() -> bool:  # a zombie has exited: it waits only for a parent (maybe none) to reap it
        for process in psutil.process_iter(["status"]):
            with contextlib.suppress(psutil.Error):
                if process.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(process.pid) == pgid:
                    return True
        return False

    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        if not alive():
            return True
        time.sleep(0.25)
    return False


def serve_forever(config: ServeConfig, extra_args: list[str] | None = None) -> int:
    """`mllm-mer serve`: start, print the URL, block until SIGINT/SIGTERM, stop cleanly."""
    server = Server(config, extra_args)
    stopping = False

    def _stop(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        server.start()
        names = [served_base_name(config), *config.model.adapters]
        print(f"serving {', '.join(names)} at {server.url}/v1 (OpenAI-compatible); Ctrl-C stops", flush=True)
        while not stopping and server.process.poll() is None:
            time.sleep(0.5)
        return 0 if stopping else 1
    finally:
        server.stop()
