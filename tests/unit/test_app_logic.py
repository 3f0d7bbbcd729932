"""The app's pure logic: the adapter a batch run answers with, the chat stream's hold on the engine lock (login
throttling: test_hardening)."""
import threading

import pytest

from mllm_mer.app.locked_stream import locked_stream


def test_a_batch_run_answers_with_the_adapter_chosen_or_the_base_model():
    from mllm_mer.app.service import batch_model
    from mllm_mer.config import ModelConfig

    model = ModelConfig(model="m", adapter=["a=/runs/a", "b=/runs/b"])
    assert batch_model(model, "b").adapters == {"b": "/runs/b", "a": "/runs/a"}  # a run answers with its first
    assert list(batch_model(model, "b").adapters)[0] == "b"
    assert batch_model(model, None).adapters == {}
    with pytest.raises(ValueError, match="unknown adapter 'c'; this app serves: a, b"):
        batch_model(model, "c")


@pytest.fixture(scope="module")
def signal_csv(tmp_path_factory):
    """20 s of ECG, skin conductance and breathing at 128 Hz (NeuroKit2's simulators), as a user uploads it."""
    from mllm_mer.synthetic.physio import State, simulate, write_csv

    channels = simulate(State(90, 18, 3), 20, 128)
    return write_csv(tmp_path_factory.mktemp("signals") / "session.csv",
                     {k: channels[k] for k in ("ECG", "EDA", "RESP")}, 128)


def _requests(video, physio, modalities=("text", "video", "audio", "physio")):
    from mllm_mer.app.ui import _analyse_requests

    return _analyse_requests([video], [None], ["Hi."], [[]], ["meld"], ["zero_shot"], ["(base model)"],
                             [list(modalities)], [False], ["single"], [None], [physio])


def test_an_analyse_request_carries_the_signal_file_into_its_sample_under_the_users_name(signal_csv):
    from mllm_mer.app.service import Service

    [request] = _requests(None, str(signal_csv))
    assert request.physio == str(signal_csv) and request.names[str(signal_csv)] == "session.csv"
    assert Service._sample(request).physio == str(signal_csv)
    [plain] = _requests(None, None)
    assert plain.physio is None and Service._sample(plain).physio is None


def test_a_signal_upload_of_another_type_is_refused_in_one_line_naming_it(tmp_path):
    import gradio as gr

    pickled = tmp_path / "S2.pkl"  # a release pickle is never unpickled from an upload
    pickled.write_bytes(b"x")
    with pytest.raises(gr.Error, match=r"S2\.pkl: a signal file must be one of \.csv, \.tsv"):
        _requests(None, str(pickled))


def test_the_traces_shown_are_the_window_the_prompt_read_and_none_without_signals(signal_csv):
    from mllm_mer.app.requests import AnalyseRequest
    from mllm_mer.app.service import _traces
    from mllm_mer.core.types import MediaSettings, Prompt, Sample
    from mllm_mer.media import load_media

    settings = MediaSettings()
    media = load_media(Sample(id="s", physio=str(signal_csv)), settings, ("physio",))
    prompt = Prompt(sample_id="s", messages=[], schema={}, label_sets=(), with_rationale=False, media=media)
    drawn = _traces(AnalyseRequest(physio=str(signal_csv)), prompt, settings)
    assert drawn is not None and drawn.size == (448, 280)
    assert _traces(AnalyseRequest(), prompt, settings) is None  # no signal file given
    unread = Prompt(sample_id="s", messages=[], schema={}, label_sets=(), with_rationale=False,
                    media=load_media(Sample(id="s", physio=str(signal_csv)), settings, ("text",)))
    assert _traces(AnalyseRequest(physio=str(signal_csv)), unread, settings) is None  # "physio" not chosen
    assert _traces(AnalyseRequest(physio=str(signal_csv)), None, settings) is None  # the sample failed


def _counting(n: int, seen: list, fail: bool = False):
    """A stand-in for a backend's chat stream (pure lock logic): n cumulative texts, recording how far it got."""
    try:
        for i in range(n):
            seen.append(i)
            yield "x" * (i + 1)
        if fail:
            raise RuntimeError("the engine refused")
    finally:
        seen.append("closed")


def test_a_chat_reader_that_walks_away_does_not_keep_the_engine_lock():
    lock, seen = threading.Lock(), []
    abandoned = locked_stream(lock, lambda: _counting(50, seen))
    assert next(abandoned) == "x"  # a browser tab read the first words, then closed without closing the stream
    assert lock.acquire(timeout=10), "the lock stayed held by a stream nobody reads"
    lock.release()
    assert seen[-1] == "closed" and 49 in seen  # the stream ran to its end and let the lock go
    assert list(locked_stream(lock, lambda: _counting(3, []))) == ["x", "xx", "xxx"]


def test_a_chat_reader_that_closes_the_stream_stops_it_and_an_error_reaches_the_reader():
    lock, seen = threading.Lock(), []
    release = threading.Event()

    def slow():
        for text in _counting(1000, seen):
            yield text
            release.wait(0.01)

    reader = locked_stream(lock, slow)
    next(reader)
    reader.close()
    assert lock.acquire(timeout=10)
    lock.release()
    assert seen[-1] == "closed" and len(seen) < 1000  # stopped early, its request aborted by its close
    with pytest.raises(RuntimeError, match="refused"):
        list(locked_stream(lock, lambda: _counting(2, [], fail=True)))
    assert not lock.locked()
