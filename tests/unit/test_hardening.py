"""Hardening of what a user or an attacker can hand the project: nesting that would crash a parser,
inline media however its type is spelled, the app's login brake, and one-line errors instead of
tracebacks (no model, no subprocess)."""
import asyncio
import base64
import io
import json

import av
import numpy as np
import pytest
from PIL import Image

from mllm_mer.core.nesting import TooDeep, check_depth

DEEP = '{"a":' * 10_000 + "1" + "}" * 10_000


# -- nesting: refused before any parser sees it, naming the file and line ------------------------------


def test_deep_nesting_is_found_on_its_line_and_brackets_inside_strings_do_not_count(tmp_path):
    deep = tmp_path / "m.jsonl"
    deep.write_text('{"id": "a"}\n{"id": "b"}\n' + DEEP + "\n")
    with pytest.raises(TooDeep, match=r"m.jsonl:3: nested more than 100 levels deep"):
        check_depth(deep)
    with pytest.raises(TooDeep, match=r":1: nested"):  # found across read blocks too
        check_depth(_write(tmp_path / "one.jsonl", DEEP), block_size=7)
    quoted = '{"text": "' + "[{" * 500 + '\\" ' + "[[" * 99 + '"}\n'
    check_depth(_write(tmp_path / "ok.jsonl", quoted * 3))  # only brackets outside strings nest


def _write(path, text):
    path.write_text(text)
    return path


def test_every_reader_refuses_deep_nesting_in_one_line_naming_the_file(tmp_path):
    from mllm_mer.app.batch_tab import manifest_columns
    from mllm_mer.conversation.context import read_context
    from mllm_mer.core.yaml_file import ConfigError, read_yaml
    from mllm_mer.datasets.base import DatasetError
    from mllm_mer.datasets.manifest import Turns, load

    with pytest.raises(DatasetError, match=r"m.jsonl:1: nested more than 100"):
        load(_write(tmp_path / "m.jsonl", DEEP + "\n"))
    with pytest.raises(DatasetError, match=r"d.json:1: nested more than 100"):  # nested dialogue records
        load(_write(tmp_path / "d.json", '[{"turns": ' + "[" * 5000 + "]" * 5000 + "}]"), turns=Turns(field="turns"))
    with pytest.raises(ValueError, match=r"c.jsonl:2: nested more than 100"):
        read_context(str(_write(tmp_path / "c.jsonl", '{"speaker": "A", "text": "hi"}\n' + DEEP + "\n")))
    with pytest.raises(ConfigError, match=r"c.yaml: nested too deeply to read as YAML"):
        read_yaml(_write(tmp_path / "c.yaml", "a: " + "[" * 5000 + "]" * 5000 + "\n"))
    with pytest.raises(ValueError, match=r"up.jsonl:1: nested more than 100"):  # the app's Batch upload preview
        manifest_columns(_write(tmp_path / "up.jsonl", DEEP + "\n"))


def test_a_csv_cell_of_a_megabyte_is_read_whole(tmp_path):
    from mllm_mer.datasets.tables import read_table

    table = read_table(_write(tmp_path / "m.csv", "id,text,label\na," + "x" * 1_000_000 + ",joy\nb,hi,joy\n"))
    assert len(table) == 2 and len(table[0]["text"]) == 1_000_000


# -- the serve guard: inline media checked by its own header, however its type is spelled --------------


def _png(width: int, height: int) -> str:
    buffer = io.BytesIO()
    Image.new("1", (width, height)).save(buffer, "PNG")  # a 1-bit blank image compresses to a few KB
    return base64.b64encode(buffer.getvalue()).decode()


def _mp4(width: int, height: int) -> str:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=1)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        frame = av.VideoFrame.from_ndarray(np.zeros((height, width, 3), np.uint8), format="rgb24")
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    return base64.b64encode(buffer.getvalue()).decode()


def _chat(kind: str, url: str) -> dict:
    return {"model": "m", "messages": [{"role": "user", "content": [{"type": kind, kind: {"url": url}}]}]}


@pytest.fixture(scope="module")
def bomb():
    return _png(13_000, 13_000)


@pytest.mark.parametrize("kind,prefix", [
    ("image_url", "data:image/png;base64,"), ("image_url", "data:Image/png;base64,"),
    ("image_url", "data:application/octet-stream;base64,"), ("image_url", "data:;base64,"),
    ("image_url", "data:image/png;charset=x;base64,"),
    ("video_url", "data:video/jpeg;base64,"), ("video_url", "data:video/JPEG;base64,"),
    ("video_url", "data:video/jpeg;x=y;base64,"), ("video_url", "data:VIDEO/Jpeg;base64,")])
def test_an_oversized_image_is_refused_however_its_type_is_spelled(bomb, kind, prefix):
    from mllm_mer.serving.server_guard import check_body

    assert "13000x13000 pixels" in check_body(_chat(kind, prefix + bomb), allow_remote=False)
    assert check_body(_chat(kind, prefix + _png(64, 48)), allow_remote=False) is None  # a small one passes


def test_an_inline_video_file_is_checked_by_its_stream_header_and_an_unreadable_one_refused():
    from mllm_mer.serving.server_guard import check_body

    refused = check_body(_chat("video_url", "data:video/mp4;base64," + _mp4(4096, 2304)), allow_remote=False)
    assert "inline video of 4096x2304 pixels a frame" in refused
    for prefix in ("data:video/mp4;base64,", "data:application/octet-stream;base64,", "data:;base64,"):
        assert check_body(_chat("video_url", prefix + _mp4(64, 48)), allow_remote=False) is None
    garbage = base64.b64encode(b"not a video" * 50).decode()
    assert "cannot be read" in check_body(_chat("video_url", "data:video/mp4;base64," + garbage), False)
    assert "not base64" in check_body(_chat("image_url", "data:image/png," + "x" * 10), False)


# -- the login brake: never waits, bounds guesses per address and per account -----------------------


class FakeClock:
    """A time source the test moves by hand (fake: the brake's windows without waiting them out)."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def _guard(**kwargs):
    from mllm_mer.app.login import LoginGuard

    clock = FakeClock()
    return LoginGuard("ann:secret", clock=clock, **kwargs), clock


def _from(address, guard, user, password):
    from mllm_mer.app.login import CLIENT

    token = CLIENT.set(address)
    try:
        return guard(user, password)
    finally:
        CLIENT.reset(token)


def test_wrong_logins_never_sleep(monkeypatch):
    import time

    def no_sleep(_):
        raise AssertionError("the login check slept on the event loop")

    monkeypatch.setattr(time, "sleep", no_sleep)
    guard, _ = _guard()
    assert not any(_from(f"10.0.0.{i % 4}", guard, "ann", f"guess{i}") for i in range(12))


def test_guesses_are_bounded_per_account_whatever_the_address_and_the_window_is_capped():
    guard, clock = _guard(free_failures=3, account_cap_s=60)
    for i in range(3):  # three free guesses, from three addresses
        assert not _from(f"10.0.1.{i}", guard, "ann", "guess")
    assert not _from("10.0.2.1", guard, "ann", "secret")  # the account rests 1 s: even the right password waits
    clock.now += 1
    assert not _from("10.0.2.2", guard, "ann", "guess")  # a 4th failure: 2 s
    clock.now += 1.5
    assert not _from("10.0.2.3", guard, "ann", "secret")  # still resting
    for _ in range(20):  # an attacker guessing as soon as each window opens
        clock.now = guard.account_open_at
        assert not _from("10.0.3.1", guard, "ann", "guess")
    assert guard.account_open_at - clock.now == 60  # never more than the cap
    clock.now += 60
    assert _from("10.0.4.1", guard, "ann", "secret")  # the owner gets in once it opens
    assert guard.account_failures == 0 and guard.account_open_at == 0  # and that resets the brake


def test_an_address_is_locked_out_and_the_owners_known_address_skips_the_account_window():
    guard, clock = _guard(max_failures=3, lockout_s=60, free_failures=1)
    assert _from("10.0.0.7", guard, "ann", "secret")  # the owner logged in from here before
    for _ in range(3):
        assert not _from("10.0.0.66", guard, "ann", "guess")
    assert not _from("10.0.0.66", guard, "ann", "secret")  # the guessing address is locked out
    assert _from("10.0.0.7", guard, "ann", "secret")  # the owner's fresh session is not held up
    clock.now += 61
    assert _from("10.0.0.66", guard, "ann", "secret")  # lockouts end


def test_the_event_loop_runs_other_work_while_wrong_logins_are_refused():
    """Gradio awaits nothing around a sync auth: each check must return without blocking the loop."""
    guard, _ = _guard()
    order = []

    async def guesser(address):
        for i in range(3):
            order.append(("login", _from(address, guard, "ann", f"guess{i}")))
            await asyncio.sleep(0)

    async def other_user():
        await asyncio.sleep(0)
        order.append(("other", True))

    async def main():
        await asyncio.gather(*(guesser(f"127.0.0.{i}") for i in range(4)), other_user())

    asyncio.run(main())
    # The other user's step ran between the first and the last guesses, not after all of them.
    assert 0 < order.index(("other", True)) < len(order) - 1


# -- one-line errors where there were tracebacks ----------------------------------------------------


def test_a_template_the_sandbox_refuses_is_a_one_line_error_naming_it(tmp_path):
    from mllm_mer.core.labels import load_label_scheme
    from mllm_mer.core.types import Sample
    from mllm_mer.prompting import build_prompt

    evil = _write(tmp_path / "evil.jinja", '{% extends "base.jinja" %}{% block system %}{{ \'\'.__class__ }}'
                                           "{% endblock %}")
    with pytest.raises(ValueError, match=r"template .*evil.jinja.*'__class__' of 'str' object is unsafe"):
        build_prompt(Sample(id="a", transcript="hi"), load_label_scheme("meld"), str(evil))


def test_a_non_finite_frame_rate_is_an_error_not_an_overflow():
    from mllm_mer.media.decode import sample_times

    for fps in (float("inf"), float("nan"), -1.0):
        with pytest.raises(ValueError, match="fps must be a finite number"):
            sample_times(10.0, 8, fps)
    assert len(sample_times(10.0, 8, 1.0)) == 8



# -- the serve guard: one request cannot tie up the server, and any client's strings stay valid JSON ----


def _through_guard(monkeypatch, path, body):
    """A request through the guard in front of a recorder that stands in for vLLM (fake: what reached it)."""
    import httpx

    from mllm_mer.serving.server_guard import GuardMiddleware

    monkeypatch.setenv("VLLM_API_KEY", "k")
    reached = []

    async def vllm(scope, receive, send):
        reached.append(json.loads((await receive())["body"]))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def go():
        transport = httpx.ASGITransport(app=GuardMiddleware(vllm))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            return await client.post(path, json=body, headers={"Authorization": "Bearer k"})
    reply = asyncio.run(go())
    return reply, reached


def _schema(schema):
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": schema}}}


def test_a_request_asking_too_much_work_is_refused_naming_the_limit(monkeypatch):
    enum = {"type": "string", "enum": [f"v{i}" for i in range(20_000)]}
    reply, reached = _through_guard(monkeypatch, "/v1/chat/completions", _schema(enum))
    assert reply.status_code == 400 and "MLLM_MER_MAX_SCHEMA_KB" in reply.json()["error"]["message"]
    many = {"type": "string", "enum": [str(i) for i in range(1001)]}
    reply, _ = _through_guard(monkeypatch, "/v1/chat/completions", _schema(many))
    assert "1001 enum values or choices (at most 1000: MLLM_MER_MAX_ENUM)" in reply.json()["error"]["message"]
    reply, _ = _through_guard(monkeypatch, "/v1/completions", {"model": "m", "prompt": ["hi"] * 1000})
    assert reply.json()["error"]["message"] == "1000 prompts in one request (at most 8: MLLM_MER_MAX_PROMPTS)"
    assert reached == []
    reply, reached = _through_guard(monkeypatch, "/v1/completions", {"model": "m", "prompt": [1, 2, 3] * 100})
    assert reply.status_code == 200 and len(reached) == 1  # token ids are one prompt


def test_a_clients_free_string_gets_the_safe_string_rule_and_its_length_bound(monkeypatch):
    import re

    from mllm_mer.prompting import free_text

    reply, reached = _through_guard(monkeypatch, "/v1/chat/completions", _schema({"type": "string", "maxLength": 200}))
    assert reply.status_code == 200
    served = reached[0]["response_format"]["json_schema"]["schema"]
    assert served == free_text(200)
    pattern = re.compile(served["pattern"])
    assert pattern.match("x" * 200) and not pattern.match("x" * 201) and not pattern.match("a\nb")
    reply, _ = _through_guard(monkeypatch, "/v1/chat/completions", _schema({"type": "string", "pattern": ".*"}))
    assert reply.status_code == 400 and "cannot keep valid JSON" in reply.json()["error"]["message"]
    # The earlier negated-class form (sent by older clients) is served well-formed, with the same bound.
    earlier = {"type": "string", "pattern": '^[^\\x00-\\x1f"\\\\]{0,120}[^\\x00-\\x1f"\\\\]{0,80}$'}
    reply, reached = _through_guard(monkeypatch, "/v1/chat/completions", _schema(earlier))
    assert reply.status_code == 200 and reached[0]["response_format"]["json_schema"]["schema"] == free_text(200)


def test_the_projects_own_answer_schema_passes_the_guard_unchanged(monkeypatch):
    from mllm_mer.core.labels import load_label_scheme
    from mllm_mer.prompting import answer_schema

    schema = answer_schema(load_label_scheme("meld").label_sets, with_rationale=True)
    reply, reached = _through_guard(monkeypatch, "/v1/chat/completions", _schema(schema))
    assert reply.status_code == 200 and reached[0]["response_format"]["json_schema"]["schema"] == schema


# -- shared memory a killed engine left: swept at the next start, however recent ------------------------


def test_an_unheld_engine_file_goes_at_once_and_a_held_one_stays_however_new(tmp_path):
    import mmap

    from mllm_mer.core.housekeeping import sweep_engine_leftovers

    shm = tmp_path / "shm"
    shm.mkdir()
    dead, live = shm / "psm_dead02", shm / "psm_live02"
    for path in (dead, live):
        path.write_bytes(b"\0" * 4096)  # both just written: no age bound spares either
    with open(live, "r+b") as f, mmap.mmap(f.fileno(), 4096):
        removed = sweep_engine_leftovers(shm, tmp_path / "no-sockets")
    assert removed == [dead] and live.exists() and not dead.exists()


# -- media: what a path is, and one pixel budget for stills and frames --------------------------------


def test_a_folder_a_fifo_or_a_device_as_media_says_what_it_is(tmp_path):
    import os

    from mllm_mer.media import MediaError, load_image
    from mllm_mer.media.decode import open_media

    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    for path, kind in ((tmp_path, "is a folder"), (fifo, r"is a named pipe \(FIFO\)"),
                       ("/dev/zero", "is a character device"), (tmp_path / "none.mp4", "file not found")):
        with pytest.raises(MediaError, match=kind):
            open_media(str(path))
        with pytest.raises(MediaError, match=kind):
            load_image(str(path))


def test_a_still_over_the_frame_pixel_budget_is_refused_from_its_header(tmp_path):
    from mllm_mer.media import MediaError, load_image

    big = tmp_path / "big.png"
    Image.new("1", (13_000, 13_000)).save(big)
    with pytest.raises(MediaError, match=r"image of 13000x13000 pixels \(at most 8294400"):
        load_image(str(big))
    small = tmp_path / "small.png"
    Image.new("RGB", (64, 48)).save(small)
    assert load_image(str(small)).size == (64, 48)


def test_a_zip_that_unpacks_to_many_times_its_size_is_refused_before_unpacking(tmp_path):
    import zipfile

    from mllm_mer.app.uploads import unpack_zip

    bomb = tmp_path / "b.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("m.csv", "id,text,label\na,hi,joy\n")
        z.writestr("zeros.mp4", b"\0" * (70 * 1024 ** 2))
    assert bomb.stat().st_size < 1024 ** 2
    with pytest.raises(ValueError, match=r"b.zip: unpacks to more than 64 MiB \(at most 20x the upload"):
        unpack_zip(bomb, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def _audio_only_mp4(path):
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16_000)
        samples = np.zeros((1, 16_000), np.float32)
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate = 16_000
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    return path


def test_a_sound_only_file_as_video_is_noted_and_bad_window_times_fail_the_sample(tmp_path):
    from mllm_mer.core.types import MediaSettings, Sample
    from mllm_mer.media import MediaError, load_media

    sound = _audio_only_mp4(tmp_path / "talk.mp4")
    media = load_media(Sample(id="a", transcript="hi", video=str(sound)), MediaSettings(), ("text", "video"))
    assert media.frames == () and any("talk.mp4: no video stream in it (sound only)" in n for n in media.notes)
    for start, end in ((float("nan"), 1.0), (-1.0, 1.0), (2.0, 1.0), (0.0, float("inf"))):
        with pytest.raises(MediaError, match="must be seconds, start before end"):
            load_media(Sample(id="a", video=str(sound), start=start, end=end), MediaSettings(), ("video",))


# -- sound: a sample reads only as much of a recording as its prompt uses ----------------------------


def _sine_wav(path, seconds, rate=8_000):
    import soundfile

    t = np.arange(int(seconds * rate)) / rate
    soundfile.write(str(path), (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate, subtype="PCM_16")
    return path


def _decoded_seconds(monkeypatch):
    """The seconds each decode of a file returned (the real decoder, watched)."""
    from mllm_mer.media import audio

    seen, real = [], audio.decode_audio

    def watched(*args, **kwargs):
        out = real(*args, **kwargs)
        seen.append(out.size / audio.SAMPLE_RATE)
        return out

    monkeypatch.setattr(audio, "decode_audio", watched)
    return seen


def test_a_window_is_read_only_up_to_the_bound_and_says_how_long_it_was(tmp_path, monkeypatch):
    from mllm_mer.media.audio import SAMPLE_RATE, load_audio_upto

    wav = str(_sine_wav(tmp_path / "long.wav", 20.0))
    decoded = _decoded_seconds(monkeypatch)
    audio, full = load_audio_upto(wav, None, None, 5.0)
    assert audio.size == 5 * SAMPLE_RATE and full == pytest.approx(20.0) and decoded == [5.0]
    audio, full = load_audio_upto(wav, 12.0, None, 5.0)  # an open window: from its start to the bound
    assert audio.size == 5 * SAMPLE_RATE and full == pytest.approx(8.0)
    audio, full = load_audio_upto(wav, 2.0, 30.0, 5.0)  # a window past the end counts what the file holds
    assert audio.size == 5 * SAMPLE_RATE and full == pytest.approx(18.0)
    audio, full = load_audio_upto(wav, 2.0, 4.0, 5.0)
    assert audio.size == 2 * SAMPLE_RATE and full is None
    audio, full = load_audio_upto(wav, 17.0, None, 5.0)  # the file ends inside the bound: nothing was cut
    assert abs(audio.size - 3 * SAMPLE_RATE) < 0.05 * SAMPLE_RATE and full is None
    assert max(decoded) == 5.0


def test_a_long_recording_without_a_window_is_analysed_and_heard_to_the_bound_with_a_note(tmp_path, monkeypatch):
    from mllm_mer.core.types import MediaSettings, Sample
    from mllm_mer.media import audio, load_media
    from mllm_mer.stages.hearing import hear

    wav = _sine_wav(tmp_path / "long.wav", 20.0)
    monkeypatch.setattr(audio, "MAX_SOUND_SECONDS", 5.0)  # 300 s in use; the CLI test reads past it
    decoded = _decoded_seconds(monkeypatch)
    media = load_media(Sample(id="a", audio=str(wav), transcript="hi"), MediaSettings(), ("text", "audio"))
    assert media.vocal_cues and decoded == [5.0]
    assert "long.wav: only the first 5 s of 20.0 s of sound analysed (at most 5 s per sample)" in media.notes
    wave, notes = hear(Sample(id="a", audio=str(wav)), MediaSettings(), 2.0)
    assert wave.size == 2 * audio.SAMPLE_RATE and decoded == [5.0, 5.0]
    assert "long.wav: audio cut from 20.0 s to 2 s (the model's audio window)" in notes
