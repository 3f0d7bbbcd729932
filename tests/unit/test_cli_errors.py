"""What the command line turns into a one-line error: a user's mistake, never a bug (which keeps its traceback)."""
from dataclasses import replace

import pytest

from mllm_mer.cli import VERBS, main
from mllm_mer.core.labels import load_label_scheme
from mllm_mer.core.types import ServiceError


def _verb_raising(monkeypatch, error: Exception) -> None:
    def run(cfg):
        raise error

    monkeypatch.setitem(VERBS, "ls", replace(VERBS["ls"], run=run))


@pytest.mark.parametrize("error", [ValueError("--limit must be at least 1"), FileNotFoundError("x.csv: no such file"),
                                   ConnectionError("cannot reach the server"), ServiceError("server answered 500")])
def test_a_user_error_is_one_line_and_exit_code_2(monkeypatch, capsys, error):
    _verb_raising(monkeypatch, error)
    assert main(["ls", "labels"]) == 2
    assert capsys.readouterr().err.splitlines() == [f"mllm-mer ls: error: {error}"]


def test_an_unknown_task_reads_as_a_sentence_not_a_quoted_key(monkeypatch, capsys):
    with pytest.raises(KeyError) as unknown:  # still a KeyError for code that looks a task up
        load_label_scheme("meld").task("valence")
    _verb_raising(monkeypatch, unknown.value)
    assert main(["ls", "labels"]) == 2
    assert capsys.readouterr().err.strip() == ("mllm-mer ls: error: label set 'meld' has no task 'valence' "
                                               "(tasks: emotion, sentiment)")


@pytest.mark.parametrize("bug", [TypeError("unsupported operand"), KeyError("prediction"),
                                 AttributeError("'NoneType' object has no attribute 'tasks'"),
                                 RuntimeError("GRPO batch and prepared rows disagree")])
def test_a_programming_error_keeps_its_traceback(monkeypatch, bug):
    _verb_raising(monkeypatch, bug)
    with pytest.raises(type(bug)):
        main(["ls", "labels"])
