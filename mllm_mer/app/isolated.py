"""Untrusted parsing in a child process: a native reader that crashes (pyarrow's SIGSEGV) ends the child,
and the app, still serving, answers with one line.

    run_isolated("module:function", *json_args, what="m.jsonl")   # -> the function's JSON-able result

The child is a fresh interpreter (`python -m mllm_mer.app.isolated`), not a fork of the serving process,
so it shares no lock, thread or engine with it; its answer is the last line of its standard output.
"""
from __future__ import annotations

import importlib
import json
import signal
import subprocess
import sys
from typing import Any

TIMEOUT_S = 300.0  # reading one upload's manifest; a reader stuck longer is stopped


def run_isolated(target: str, *args: Any, what: str, timeout: float = TIMEOUT_S) -> Any:
    """`target(*args)` run in a child process; a ValueError naming `what` when it raised, crashed or hung."""
    try:
        proc = subprocess.run([sys.executable, "-m", __name__, target, json.dumps(args)], capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:  # run() has killed the child
        raise ValueError(f"{what}: reading it took over {timeout:.0f} s and was stopped") from None
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name if -proc.returncode in signal.valid_signals() else "a signal"
        raise ValueError(f"{what}: the file reader crashed on it ({name}); nothing was run")
    lines = proc.stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1]) if proc.returncode == 0 and lines else None
    except json.JSONDecodeError:
        answer = None
    if not isinstance(answer, dict) or not ({"ok", "error"} & set(answer)):
        raise ValueError(f"{what}: the file reader stopped with code {proc.returncode} and no answer")
    if "error" in answer:
        raise ValueError(answer["error"])
    return answer["ok"]


def _main(target: str, args_json: str) -> None:
    module, _, name = target.partition(":")
    function = getattr(importlib.import_module(module), name)
    try:
        answer = {"ok": function(*json.loads(args_json))}
    except Exception as error:  # the reader's own message, passed on as one line
        answer = {"error": " ".join(str(error).split()) or type(error).__name__}
    print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    _main(*sys.argv[1:3])
