"""The serve guard as an ASGI middleware, driven in process (the app behind it is a recorder that answers
200, standing in for vLLM's): routes allow-listed, every method keyed, bodies capped before they are read,
URLs refused wherever they sit, numbers capped whatever their JSON type, bomb images refused."""
import asyncio
import base64
import json
import struct
import zlib

from helpers import GUARD_AUTH, AsgiRecorder, call_asgi

from mllm_mer.serving import server_guard
from mllm_mer.serving.server_guard import GuardMiddleware, as_whole_number, check_body


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height (no pixel data: what a decompression bomb looks like)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk + struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))


def chat(*parts, **extra):
    return {"model": "m", "max_tokens": 4, **extra, "messages": [{"role": "user", "content": list(parts)}]}


def test_a_url_in_any_shape_on_any_route_is_refused_and_never_reaches_the_server(guarded):
    recorder, guard = guarded
    anthropic = {"model": "m", "max_tokens": 4, "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "url", "url": "http://127.0.0.1:9/x.png"}}]}]}
    assert call_asgi(guard, "POST", "/v1/messages", json=anthropic, headers=GUARD_AUTH).status_code == 404
    for body in (chat({"type": "image_url", "image_url": {"url": "http://127.0.0.1:9/x.png"}}),
                 chat({"type": "image_url", "image_url": "file:///etc/passwd"}),
                 chat({"type": "text", "text": "hi", "extra": {"url": "https://example.org/a.mp4"}})):
        answer = call_asgi(guard, "POST", "/v1/chat/completions", json=body, headers=GUARD_AUTH)
        assert answer.status_code == 400 and "data: URLs" in answer.json()["error"]["message"]
    odd = call_asgi(guard, "POST", "/v1/chat/completions", json=chat({"type": "image", "source": {"data": "x"}}),
                    headers=GUARD_AUTH)
    assert odd.status_code == 400 and "content part type 'image'" in odd.text
    assert recorder.calls == []


def test_numbers_are_capped_whatever_their_json_type(guarded):
    recorder, guard = guarded
    text = {"type": "text", "text": "hi"}
    for extra, reason in (({"n": "1000"}, "n is at most"), ({"n": 1000.0}, "n is at most"),
                          ({"max_tokens": "4097"}, "max_tokens is at most"), ({"n": "2.5"}, "whole number"),
                          ({"max_completion_tokens": True}, "whole number")):
        answer = call_asgi(guard, "POST", "/v1/chat/completions", json=chat(text, **extra), headers=GUARD_AUTH)
        assert answer.status_code == 400 and reason in answer.text, (extra, answer.text)
    assert recorder.calls == []
    answer = call_asgi(guard, "POST", "/v1/chat/completions", json=chat(text, n="2"), headers=GUARD_AUTH)
    assert answer.status_code == 200
    assert as_whole_number("3") == 3 and as_whole_number(3.0) == 3 and as_whole_number("x") is None


def test_bodies_are_capped_before_they_are_read(guarded):
    recorder, guard = guarded
    huge = {"Content-Length": str(300 * 1024 * 1024), **GUARD_AUTH}
    received = []

    async def go():
        async def receive():  # would hand over 300 MiB; the guard must not ask for it
            received.append(1)
            return {"type": "http.request", "body": b"x" * 1024, "more_body": True}
        sent = []

        async def send(message):
            sent.append(message)
        for path in ("/health", "/tokenize", "/v1/chat/completions"):
            scope = {"type": "http", "method": "POST" if path != "/health" else "GET", "path": path,
                     "headers": [(k.lower().encode(), v.encode()) for k, v in huge.items()]}
            await guard(scope, receive, send)
        return sent
    sent = asyncio.run(go())
    assert [m["status"] for m in sent if m["type"] == "http.response.start"] == [413, 413, 413]
    assert received == [] and recorder.calls == []
    unauthenticated = call_asgi(guard, "POST", "/v1/chat/completions", content=b"x" * 1024)
    assert unauthenticated.status_code == 401 and recorder.calls == []


def test_an_inline_decompression_bomb_is_a_400_with_the_reason(guarded):
    recorder, guard = guarded
    bomb = "data:image/png;base64," + base64.b64encode(png_header(50_000, 50_000)).decode()
    answer = call_asgi(guard, "POST", "/v1/chat/completions",
                       json=chat({"type": "image_url", "image_url": {"url": bomb}}), headers=GUARD_AUTH)
    assert answer.status_code == 400 and "2500000000 pixels" in answer.json()["error"]["message"]
    large = "data:image/png;base64," + base64.b64encode(png_header(8000, 6000)).decode()  # under PIL's own limit
    assert "8000x6000" in check_body(chat({"type": "image_url", "image_url": {"url": large}}), allow_remote=False)
    fine = "data:image/png;base64," + base64.b64encode(png_header(64, 48)).decode()
    assert check_body(chat({"type": "image_url", "image_url": {"url": fine}}), allow_remote=False) is None
    assert recorder.calls == []


def test_a_request_may_set_only_a_clips_frame_rate_and_every_frame_of_a_sequence_is_checked(guarded):
    recorder, guard = guarded
    frame = base64.b64encode(png_header(64, 48)).decode()
    sequence = {"type": "video_url", "video_url": {"url": f"data:video/jpeg;base64,{frame},{frame}"}}
    for extra, reason in (({"mm_processor_kwargs": {"max_pixels": 10**9}}, "mm_processor_kwargs are not accepted"),
                          ({"media_io_kwargs": {"video": {"fps": 2, "num_frames": 10**6}}}, "may only carry video.fps"),
                          ({"media_io_kwargs": {"image": {"fps": 2}}}, "may only carry video.fps"),
                          ({"media_io_kwargs": [1]}, "may only carry video.fps"),
                          ({"media_io_kwargs": {"video": 5}}, "may only carry video.fps"),
                          ({"media_io_kwargs": {"video": {"fps": "2"}}}, "a number in (0, 120]"),
                          ({"media_io_kwargs": {"video": {"fps": 1e9}}}, "a number in (0, 120]")):
        answer = call_asgi(guard, "POST", "/v1/chat/completions", json=chat(sequence, **extra), headers=GUARD_AUTH)
        assert answer.status_code == 400 and reason in answer.text, (extra, answer.text)
    bomb = base64.b64encode(png_header(50_000, 50_000)).decode()
    bombed = {"type": "video_url", "video_url": {"url": f"data:video/jpeg;base64,{frame},{bomb}"}}
    assert "too large to decode" in check_body(chat(bombed), allow_remote=False)
    assert recorder.calls == []
    fine = chat(sequence, media_io_kwargs={"video": {"fps": 1.43}})
    assert call_asgi(guard, "POST", "/v1/chat/completions", json=fine, headers=GUARD_AUTH).status_code == 200


def test_without_a_key_the_routes_are_still_allow_listed(monkeypatch):
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    recorder = AsgiRecorder()
    guard = GuardMiddleware(recorder)
    assert call_asgi(guard, "POST", "/v1/messages", json={}).status_code == 404
    assert call_asgi(guard, "GET", "/v1/models").status_code == 200
    assert json.loads(call_asgi(guard, "POST", "/v1/responses", json={}).text)["error"]["code"] == 404
    assert server_guard.MAX_N == 4


def test_secrets_are_masked_in_every_spelling_and_downloads_hold_no_launch_command():
    from mllm_mer.evaluation.records import for_download, masked_command

    argv = ["mllm-mer", "evaluate", "--api-key", "K1", "--api-key=K2", "api_key=K3", "--client.api_key", "K4",
            "client.api-key=K5", "--auth", "u:p", "--model", "m"]
    shown = " ".join(masked_command(argv))
    assert not any(secret in shown for secret in ("K1", "K2", "K3", "K4", "K5", "u:p")) and "--model m" in shown
    run = {"fingerprint": {"model": "m"}, "provenance": {"command": argv, "host": "box", "config": {}, "started": "t"}}
    assert for_download(run) == {"fingerprint": {"model": "m"}, "provenance": {"started": "t"}}
