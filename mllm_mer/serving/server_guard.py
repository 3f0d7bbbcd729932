"""ASGI middleware that `mllm-mer serve` puts in front of vLLM's OpenAI-compatible app.

vLLM's own `--api-key` guards only the /v1-style routes (so /invocations, /tokenize, /metrics,
/docs answered without a key) and its media loader fetches any http(s) URL a request names.
This guard, loaded through vLLM's `--middleware` option, closes both:
- with a key set (`VLLM_API_KEY` in the server's environment), every route but /health needs
  `Authorization: Bearer KEY` (401 otherwise);
- media in requests must be inline `data:` URLs: a remote, local or `file:` URL is a 400, not a
  fetch, unless the operator allowed remote media (`mllm-mer serve --allow-remote-media`, which
  also passes vLLM's `--allowed-media-domains`);
- `n` and `max_tokens` are capped, so one request cannot ask for unbounded work.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
from typing import Any

OPEN_PATHS = ("/health",)
MEDIA_KEYS = ("image_url", "video_url", "audio_url", "input_audio", "file")
MAX_N = int(os.environ.get("MLLM_MER_MAX_N", "4"))
MAX_TOKENS = int(os.environ.get("MLLM_MER_MAX_TOKENS", "4096"))
MAX_BODY_BYTES = 512 * 1024 * 1024


def _remote_urls(value: Any) -> list[str]:
    """Every media URL in a request body that is not an inline data: URL."""
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if key in MEDIA_KEYS:
                url = item.get("url") if isinstance(item, dict) else item
                if isinstance(url, str) and not url.startswith("data:"):
                    found.append(url)
            else:
                found += _remote_urls(item)
    elif isinstance(value, list):
        for item in value:
            found += _remote_urls(item)
    return found


def check_body(body: dict[str, Any], allow_remote: bool) -> str | None:
    """Why a request body is refused, or None."""
    if not allow_remote and (urls := _remote_urls(body)):
        return f"media must be inline data: URLs; this server does not fetch {urls[0][:80]!r}"
    n = body.get("n")
    if isinstance(n, int) and n > MAX_N:
        return f"n is at most {MAX_N}"
    for key in ("max_tokens", "max_completion_tokens"):
        value = body.get(key)
        if isinstance(value, int) and value > MAX_TOKENS:
            return f"{key} is at most {MAX_TOKENS}"
    return None


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
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        path = scope["path"].removeprefix(scope.get("root_path", ""))
        if self.key_hash is not None and path not in OPEN_PATHS and scope.get("method") != "OPTIONS" \
                and not self._authorised(scope):
            return await _reply(send, 401, "Unauthorized", scope)
        if scope["type"] != "http" or scope.get("method") != "POST":
            return await self.app(scope, receive, send)
        chunks, size = [], 0
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > MAX_BODY_BYTES:
                return await _reply(send, 413, "request body too large", scope)
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        try:
            parsed = json.loads(body) if body else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            parsed = None  # not JSON: vLLM answers it
        reason = check_body(parsed, self.allow_remote) if isinstance(parsed, dict) else None
        if reason:
            return await _reply(send, 400, reason, scope)
        delivered = False

        async def replay():
            nonlocal delivered
            if delivered:
                return await receive()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)


async def _reply(send, status: int, message: str, scope) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    payload = json.dumps({"error": {"message": message, "code": status}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})
