"""ASGI middleware that `mllm-mer serve` puts in front of vLLM's OpenAI-compatible app.

vLLM's own `--api-key` guards only the /v1-style routes, its media loader fetches any URL a request
names (on every route that takes media, the Anthropic-style /v1/messages included), and it reads
whole bodies. This guard, loaded through vLLM's `--middleware` option, serves an allow-list instead:
- with a key set (`VLLM_API_KEY` in the server's environment), every route and method but
  GET /health needs `Authorization: Bearer KEY` (401 otherwise; OPTIONS too: no CORS is served);
- only the routes mllm-mer's clients use are served (`ROUTES`); any other is a 404, so a route a
  later vLLM adds is closed until it is listed here;
- bodies are capped per route before they are read (`Content-Length` first, then as they stream):
  small for tokenising, a configured cap (`MLLM_MER_MAX_BODY_MB`, 64) for media requests;
- every URL anywhere in a body must be an inline `data:` URL (a remote, local or `file:` URL is a
  400 and is never fetched) unless the operator allowed remote media (`--allow-remote-media`);
  message content parts must be of the types we send; every inline image, frame sequence and video
  is checked by its own decoded header whatever media type it claims (`media_guard`), and one too
  large to decode, or that cannot be read, is a 400 with the reason;
- `n` and the token caps are read as numbers whatever their JSON type ("1000", 1000.0) and capped;
- the work one request asks for (schema size, enum values, prompts per request) is bounded, and
  free strings in a client's schema are kept valid JSON (`request_limits`);
- per-request media settings: only a clip's frame rate (`media_io_kwargs.video.fps`, which a frame
  sequence needs); every other media or processor setting a request names is refused.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
from typing import Any

from mllm_mer.serving.adapter_prompts import ENV as PROMPTS_ENV
from mllm_mer.serving.adapter_prompts import ROUTE as PROMPTS_ROUTE
from mllm_mer.serving.media_guard import media_refusal, media_urls
from mllm_mer.serving.request_limits import check_work, keep_strings_valid, schema_texts

MB = 1024 * 1024
MAX_N = int(os.environ.get("MLLM_MER_MAX_N", "4"))
MAX_TOKENS = int(os.environ.get("MLLM_MER_MAX_TOKENS", "4096"))
MAX_MEDIA_BODY = int(float(os.environ.get("MLLM_MER_MAX_BODY_MB", "64")) * MB)
OPEN_PATHS = {("GET", "/health"), ("HEAD", "/health")}
# (method, path) -> the largest body it may carry.
SMALL = 64 * 1024  # what a GET (or a ping) may carry
ROUTES: dict[tuple[str, str], int] = {
    ("GET", "/health"): SMALL, ("HEAD", "/health"): SMALL, ("GET", "/v1/models"): SMALL, ("GET", "/version"): SMALL,
    ("GET", "/metrics"): SMALL, ("GET", "/ping"): SMALL, ("POST", "/ping"): SMALL,
    ("POST", "/v1/chat/completions"): MAX_MEDIA_BODY, ("POST", "/v1/completions"): 8 * MB,
    ("POST", "/tokenize"): 8 * MB, ("POST", "/detokenize"): 8 * MB, ("GET", PROMPTS_ROUTE): SMALL,
}
PART_TYPES = {"text", "image_url", "video_url", "audio_url", "input_audio"}
CAPPED = {"n": MAX_N, "best_of": MAX_N, "max_tokens": MAX_TOKENS, "max_completion_tokens": MAX_TOKENS}


def as_whole_number(value: Any) -> int | None:
    """A JSON number or numeric string as an int; None when it is not a whole number (true/false neither)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    return value if isinstance(value, int) else None


def _check_numbers(body: dict[str, Any]) -> str | None:
    for key, most in CAPPED.items():
        if key not in body or body[key] is None:
            continue
        number = as_whole_number(body[key])
        if number is None or number < 0:
            return f"{key} must be a whole number, not {str(body[key])[:40]!r}"
        if number > most:
            return f"{key} is at most {most}"
    return None


def _check_parts(body: dict[str, Any]) -> str | None:
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        for part in content if isinstance(content, list) else []:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind not in PART_TYPES:
                return f"content part type {str(kind)[:40]!r} is not served (allowed: {', '.join(sorted(PART_TYPES))})"
    return None


def _check_media_settings(body: dict[str, Any]) -> str | None:
    if body.get("mm_processor_kwargs"):
        return "mm_processor_kwargs are not accepted per request"
    settings = body.get("media_io_kwargs")
    if not settings:
        return None
    video = settings.get("video") if isinstance(settings, dict) else None
    if not isinstance(video, dict) or set(settings) != {"video"} or set(video) != {"fps"}:
        return "media_io_kwargs may only carry video.fps"
    fps = video["fps"]
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps <= 120:
        return f"media_io_kwargs video.fps must be a number in (0, 120], not {str(fps)[:40]!r}"
    return None


def media_too_large(url: str, kind: str | None = "image_url") -> str | None:
    """Why an inline media URL (an image, a frame sequence, a video file) must not be decoded."""
    return media_refusal(kind, url)


def check_body(body: dict[str, Any], allow_remote: bool, route: str = "/v1/chat/completions") -> str | None:
    """Why a request body is refused, or None."""
    urls = media_urls(body)
    remote = [u for _, u in urls if not u.startswith("data:")]
    if remote and not allow_remote:
        return f"media must be inline data: URLs; this server does not fetch {remote[0][:80]!r}"
    for kind, url in urls:
        if reason := media_refusal(kind, url):
            return reason
    return (_check_parts(body) or _check_numbers(body) or _check_media_settings(body)
            or check_work(body, route) or keep_strings_valid(body))


def route_of(scope) -> tuple[str, str]:
    return scope.get("method", "GET"), scope["path"].removeprefix(scope.get("root_path", ""))


class GuardMiddleware:
    def __init__(self, app) -> None:
        self.app = app
        key = os.environ.get("VLLM_API_KEY") or ""
        self.key_hash = hashlib.sha256(key.encode()).digest() if key else None
        self.allow_remote = os.environ.get("MLLM_MER_ALLOW_REMOTE_MEDIA") == "1"

    def _authorised(self, scope) -> bool:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        return secrets.compare_digest(hashlib.sha256(token.encode()).digest(), self.key_hash)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            return await self.app(scope, receive, send)
        if scope["type"] != "http":  # websockets are not served
            return await _reply(send, 404, "not served", scope)
        route = route_of(scope)
        if self.key_hash is not None and route not in OPEN_PATHS and not self._authorised(scope):
            return await _reply(send, 401, "Unauthorized", scope)
        if route not in ROUTES:
            return await _reply(send, 404, f"{route[0]} {route[1][:80]} is not served here", scope)
        if route == ("GET", PROMPTS_ROUTE):  # answered here: vLLM knows nothing of an adapter's prompt
            return await _reply(send, 200, "", scope, payload=os.environ.get(PROMPTS_ENV, "{}").encode())
        body = await _read_capped(scope, receive, ROUTES[route])
        if body is None:
            return await _reply(send, 413, f"request body too large for {route[1]} (at most {ROUTES[route]} bytes)",
                                scope)
        if route[0] == "POST" and body:
            try:
                parsed = json.loads(body)
            except (json.JSONDecodeError, UnicodeDecodeError):
                return await _reply(send, 400, "the request body is not JSON", scope)
            schemas = schema_texts(parsed) if isinstance(parsed, dict) else []
            reason = check_body(parsed, self.allow_remote, route[1]) if isinstance(parsed, dict) \
                else "expected a JSON object"
            if reason:
                return await _reply(send, 400, reason, scope)
            if schema_texts(parsed) != schemas:  # a schema's strings were made safe: pass that on
                body = json.dumps(parsed).encode()
                scope = {**scope, "headers": [(k, v) for k, v in scope.get("headers", [])
                                              if k.lower() != b"content-length"]
                         + [(b"content-length", str(len(body)).encode())]}
        delivered = False

        async def replay():
            nonlocal delivered
            if delivered:
                return await receive()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)


async def _read_capped(scope, receive, cap: int) -> bytes | None:
    """The request body, or None as soon as it is known to pass `cap` (the declared length first)."""
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
    declared = as_whole_number(headers.get("content-length", "0") or "0")
    if declared is None or declared > cap:
        return None
    chunks, size = [], 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > cap:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _reply(send, status: int, message: str, scope, payload: bytes | None = None) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    payload = payload if payload is not None else json.dumps({"error": {"message": message, "code": status}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})


__all__ = ["ROUTES", "GuardMiddleware", "as_whole_number", "check_body", "media_too_large", "route_of"]
