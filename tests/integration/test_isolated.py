"""The app's isolating runner: what a child process answers, raises, crashes with or hangs on."""
import pytest

from mllm_mer.app.isolated import run_isolated


def test_a_native_crash_in_the_child_is_a_one_line_error_and_the_caller_goes_on():
    # ctypes.string_at(0) reads address 0: a real SIGSEGV in native code, as a crashing C reader would.
    with pytest.raises(ValueError) as crashed:
        run_isolated("ctypes:string_at", 0, what="m.jsonl")
    assert str(crashed.value) == "m.jsonl: the file reader crashed on it (SIGSEGV); nothing was run"
    assert run_isolated("json:loads", "[1, 2]", what="m.jsonl") == [1, 2]  # this process is unharmed


def test_the_childs_own_error_arrives_as_its_message_and_a_hang_is_stopped():
    with pytest.raises(ValueError, match=r"^Expecting property name enclosed in double quotes: line 1 column 2"):
        run_isolated("json:loads", "{", what="m.jsonl")
    with pytest.raises(ValueError, match=r"^m\.csv: reading it took over 1 s and was stopped$"):
        run_isolated("time:sleep", 60, what="m.csv", timeout=1)


def test_an_uploaded_manifest_is_read_in_the_child_as_the_run_reads_it(tmp_path):
    from mllm_mer.app.uploads import read_in_child

    good = tmp_path / "m.jsonl"
    good.write_text('{"id": "a", "text": "hi", "label": "joy"}\n{"id": "b", "text": "yo", "label": "sadness"}\n')
    assert read_in_child(good) == 2
    deep = tmp_path / "deep.jsonl"
    deep.write_text('{"id": "a"}\n' + '{"a":' * 10_000 + "1" + "}" * 10_000 + "\n")
    with pytest.raises(ValueError, match=r"deep\.jsonl:2: nested more than 100 levels deep"):
        read_in_child(deep)
