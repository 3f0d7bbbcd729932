"""`mllm-mer serve` whose engine cannot start says why: the engine's own error, not only vLLM's wrapper
("WorkerProc initialization failed", "Engine core initialization failed")."""
import pytest
from helpers import run_cli

from mllm_mer.serving.vllm_server import free_port

pytestmark = pytest.mark.vllm


def test_an_engine_that_cannot_start_prints_its_own_error(tiny_model):
    # One KV-cache block cannot hold a 4096-token sequence: the engine refuses at start, in its own process.
    proc = run_cli("serve", "--model", tiny_model, "--port", free_port(), "--max-model-len", "4096", "--enforce-eager",
                   "--num-gpu-blocks-override", "1", check=False, timeout=1200)
    assert proc.returncode != 0
    [line] = [x for x in proc.stderr.splitlines() if "while starting" in x]
    cause = line.split("while starting: ", 1)[1]
    assert "Error" in cause and "initialization failed" not in cause, line
    print(line)
