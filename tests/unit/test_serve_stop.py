"""How serve stops and fails to start, in its pure parts: bounds that grow with the machine's load, and the
engine's own error lines printed when a start fails."""
from mllm_mer.serving import vllm_server
from mllm_mer.serving.vllm_server import load_factor, start_failure_cause, teardown_allowance_s

ENGINE_LOG = """\
INFO 12-05 11:00:01 [core.py:93] Initializing a V1 LLM engine
(EngineCore pid=123) ERROR 12-05 11:00:09 [multiproc_executor.py:600] WorkerProc failed to start.
(EngineCore pid=123) Traceback (most recent call last):
(EngineCore pid=123)   File "/venv/vllm/v1/executor/multiproc_executor.py", line 571, in worker_main
(EngineCore pid=123)     raise ValueError(msg)
(EngineCore pid=123) ValueError: The model's max seq len (65536) is larger than the maximum number of tokens \
that can be stored in KV cache (16384). Try increasing `VLLM_CPU_KVCACHE_SPACE`
(EngineCore pid=123) ERROR 12-05 11:00:09 [core.py:708] EngineCore failed to start.
RuntimeError: WorkerProc initialization failed due to an exception in a background process. See stack trace \
for root cause.
RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {}
"""


WORKER_LOG = """\
(Worker pid=25302) ERROR 12-05 12:15:47 [multiproc_executor.py:953] WorkerProc failed to start.
(Worker pid=25302) ERROR 12-05 12:15:47 [multiproc_executor.py:953] Traceback (most recent call last):
(Worker pid=25302) ERROR 12-05 12:15:47 [multiproc_executor.py:953]     raise OSError(f"{e}") from e
(Worker pid=25302) ERROR 12-05 12:15:47 [multiproc_executor.py:953] OSError: Repo id must be in the form \
'repo_name' or 'namespace/repo_name': '/models/tiny'.
(EngineCore pid=25210) ERROR 12-05 12:15:49 [core.py:1510] Traceback (most recent call last):
RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {}
"""


def test_a_failed_start_names_the_workers_error_without_vllms_line_prefixes():
    assert start_failure_cause(WORKER_LOG.splitlines()) == [
        "OSError: Repo id must be in the form 'repo_name' or 'namespace/repo_name': '/models/tiny'."]


def test_a_failed_start_prints_the_engines_own_error_not_only_the_wrapper():
    cause = start_failure_cause(ENGINE_LOG.splitlines())
    assert any("ValueError: The model's max seq len (65536) is larger" in line for line in cause), cause
    assert not any("WorkerProc initialization failed" in line or "See root cause above" in line for line in cause)
    assert not any(line.startswith("File ") for line in cause)
    assert start_failure_cause(["INFO all well", "\x1b[32mINFO\x1b[0m ready"]) == []


def test_the_stop_and_teardown_bounds_grow_with_the_machines_load(monkeypatch):
    monkeypatch.setattr(vllm_server.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(vllm_server.os, "getloadavg", lambda: (1.0, 1.0, 1.0))
    assert load_factor() == 1.0 and teardown_allowance_s() == 60  # idle: never below the base
    monkeypatch.setattr(vllm_server.os, "getloadavg", lambda: (8.0, 6.0, 4.0))
    assert load_factor() == 4.0 and teardown_allowance_s() == 240  # four runnable processes per core
