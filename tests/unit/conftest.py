"""The unit tier stays pure logic: a test here that asks for a model fixture, starts a process or loads a model
fails at once, naming what it did (such a test belongs in tests/integration)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# Fixtures that build or load a model, start an engine, a server or a CLI run.
HEAVY_FIXTURES = {"tiny_model", "tiny_omni", "hf_backend", "vllm_backend", "tiny_lora", "colour_adapter", "app_url"}
# Audit events of a new process (the subprocess module, os.system, os.exec*, os.posix_spawn, os.fork).
PROCESS_EVENTS = {"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.fork", "os.forkpty"}
# Quick, model-free look-ups that the code and its libraries make (the run record's commit, the platform's
# architecture): allowed, since they load nothing and end at once.
ALLOWED_PROGRAMS = {"git", "file", "uname"}
_inside_a_unit_test = [False]


def _program(event: str, args: tuple) -> str:
    if event == "subprocess.Popen":  # (executable, args, cwd, env)
        command = args[1] if isinstance(args[1], (list, tuple)) else [args[1]]
        return Path(os.fsdecode(args[0] or command[0])).name
    return ""


def _refuse_processes(event: str, args: tuple) -> None:
    if _inside_a_unit_test[0] and event in PROCESS_EVENTS and _program(event, args) not in ALLOWED_PROGRAMS:
        raise RuntimeError(f"a unit test may not start a process ({event}: {str(args)[:200]}); "
                           "move it to tests/integration")


# An audit hook cannot be removed: it stays for the process and acts only while a unit test runs.
sys.addaudithook(_refuse_processes)


def _refuse_model_load(cls, *args, **kwargs):
    raise RuntimeError(f"a unit test may not load a model ({cls.__name__}.from_pretrained); "
                       "move it to tests/integration")


def _guard_model_loads() -> object | None:
    """Replace `PreTrainedModel.from_pretrained` while a test runs, where transformers' models are imported
    (without them, nothing can load one); returns the original to put back."""
    modeling = sys.modules.get("transformers.modeling_utils")
    if modeling is None:
        return None
    original = modeling.PreTrainedModel.__dict__["from_pretrained"]
    modeling.PreTrainedModel.from_pretrained = classmethod(_refuse_model_load)
    return original


@pytest.fixture(autouse=True)
def _no_cli_watchdog(monkeypatch):
    """The CLI run in process (`main([...])`) starts its watchdog, a process, once per process: mark this one as
    watched so that the verbs' parse-and-refuse paths stay in process (the watchdog is tested in integration)."""
    monkeypatch.setenv("MLLM_MER_GUARDED", str(os.getpid()))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item):
    heavy = sorted(HEAVY_FIXTURES & set(item.fixturenames))
    if heavy:
        raise pytest.fail.Exception(f"a unit test may not use {', '.join(heavy)}; move it to tests/integration",
                                    pytrace=False)
    return (yield from _guarded())


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_call(item):
    return (yield from _guarded())


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_teardown(item, nextitem):
    return (yield from _guarded())


def _guarded():
    original = _guard_model_loads()
    _inside_a_unit_test[0] = True
    try:
        return (yield)
    finally:
        _inside_a_unit_test[0] = False
        if original is not None:
            sys.modules["transformers.modeling_utils"].PreTrainedModel.from_pretrained = original
