"""Runs vLLM's OpenAI-compatible server for a base model and its LoRA adapters.

Binds 127.0.0.1 by default, waits until /health answers, and stops the whole
process group (API server and engine workers) on exit, so nothing is orphaned.
The server module is started directly: the CPU distribution has no `vllm serve` script.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from mllm_mer.backends.vllm_engine import cpu_engine_env
from mllm_mer.models import family_for, resolve_model


@dataclass
class ServeConfig:
    model: str  # hub id or local directory
    adapters: dict[str, str] = field(default_factory=dict)  # name -> PEFT directory
    host: str = "127.0.0.1"  # loopback only unless asked
    port: int = 8000  # 0: pick a free port
    api_key: str | None = None
    served_name: str | None = None  # name clients use for the base model (default: the model's dir/id name)
    dtype: str = "auto"
    max_model_len: int = 8192
    max_lora_rank: int = 64
    kv_cache_gb: int = 1
    enforce_eager: bool = False
    max_images: int = 1  # media per prompt
    max_videos: int = 1
    startup_timeout_s: float = 300.0
    log_file: str | None = None  # server output goes here (default: inherited)

    @property
    def base_name(self) -> str:
        return self.served_name or Path(self.model.rstrip("/")).name


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def server_command(config: ServeConfig) -> list[str]:
    model = resolve_model(config.model)
    family_for(model)  # fail early on an unsupported model
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model,
           "--served-model-name", config.base_name, "--host", config.host, "--port", str(config.port),
           "--max-model-len", str(config.max_model_len), "--enable-prefix-caching",
           "--limit-mm-per-prompt", json.dumps({"image": config.max_images, "video": config.max_videos}),
           "--structured-outputs-config", json.dumps({"backend": "xgrammar", "disable_any_whitespace": True})]
    if config.dtype != "auto":
        cmd += ["--dtype", config.dtype]
    else:
        import torch

        if not torch.cuda.is_available():
            cmd += ["--dtype", "float32"]
    if config.enforce_eager:
        cmd.append("--enforce-eager")
    if config.api_key:
        cmd += ["--api-key", config.api_key]
    if config.adapters:
        cmd += ["--enable-lora", "--max-lora-rank", str(config.max_lora_rank),
                "--max-loras", str(len(config.adapters)), "--lora-modules"]
        cmd += [f"{name}={path}" for name, path in config.adapters.items()]
    return cmd


class Server:
    """A running server; a context manager that always stops it."""

    def __init__(self, config: ServeConfig):
        if config.port == 0:
            config.port = free_port(config.host)
        self.config = config
        self.url = f"http://{config.host}:{config.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> Server:
        env = {**cpu_engine_env(self.config.kv_cache_gb), **os.environ}
        out = open(self.config.log_file, "ab") if self.config.log_file else None
        # A new session: the server and its engine workers share one process group to stop together.
        self.process = subprocess.Popen(server_command(self.config), env=env, stdout=out, stderr=out,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
        self._wait_healthy()
        return self

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.config.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"vLLM server exited with code {self.process.returncode} while starting"
                                   + (f"; see {self.config.log_file}" if self.config.log_file else ""))
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        self.stop()
        raise TimeoutError(f"vLLM server at {self.url} not healthy after {self.config.startup_timeout_s:.0f} s")

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        pgid = os.getpgid(self.process.pid)
        os.killpg(pgid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        try:  # anything of the group still alive (engine workers) goes too
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def serve_forever(config: ServeConfig) -> int:
    """`mllm-mer serve`: start, print the URL, block until SIGINT/SIGTERM, stop cleanly."""
    server = Server(config)
    stopping = False

    def _stop(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        server.start()
        names = [config.base_name, *config.adapters]
        print(f"serving {', '.join(names)} at {server.url}/v1 (OpenAI-compatible); Ctrl-C stops", flush=True)
        while not stopping and server.process.poll() is None:
            time.sleep(0.5)
        return 0 if stopping else 1
    finally:
        server.stop()
