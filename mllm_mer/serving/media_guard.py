"""Inline media the serve guard checks before vLLM decodes it: every image and video payload by its own
decoded header, whatever media type the URL claims.

vLLM picks the decoder by where a URL sits (`image_url` -> an image whatever its type; `video_url` ->
a JPEG frame sequence when the type is `video/jpeg` in any case and with any parameters, else a video
file), so the checks here key on the same: the media type is normalised exactly as vLLM's data-URL
loader does, and a payload that cannot be read here is refused rather than passed on unchecked.
"""
from __future__ import annotations

import base64
import binascii
import io
import warnings
from typing import Any

MB = 1024 * 1024
MAX_IMAGE_PIXELS = 3840 * 2160  # as the media stage's limit on source frames and stills
MEDIA_KEYS = ("image_url", "video_url", "audio_url")


def media_urls(value: Any, kind: str | None = None) -> list[tuple[str | None, str]]:
    """(modality key, URL) for every URL-like string in a body; the key is the nearest enclosing
    `image_url`/`video_url`/`audio_url` (None where no such key encloses it)."""
    found: list[tuple[str | None, str]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            inner = key if key in MEDIA_KEYS else kind
            if key in ("url", *MEDIA_KEYS) and isinstance(item, str):
                found.append((inner, item))
            else:
                found += media_urls(item, inner)
    elif isinstance(value, list):
        for item in value:
            found += media_urls(item, kind)
    return found


def data_url_parts(url: str) -> tuple[str, str] | None:
    """(media type, payload) of a base64 data URL, the type normalised as vLLM's loader does (parameters
    dropped, compared without case); None when vLLM would not decode it (no comma, not base64)."""
    spec, comma, data = url[5:].partition(",")
    media_type, semicolon, encoding = spec.rpartition(";")
    if not comma or not semicolon or encoding != "base64":
        return None
    return media_type.partition(";")[0].lower(), data


def media_refusal(kind: str | None, url: str) -> str | None:
    """Why an inline media URL must not reach vLLM's decoders, or None."""
    if not url.startswith("data:"):
        return None  # remote URLs are refused (or allowed) by the caller
    parts = data_url_parts(url)
    if parts is None:
        return "an inline media URL that is not base64 (data:<type>;base64,<data>)"
    media_type, data = parts
    if kind == "audio_url":
        return None  # vLLM caps audio by its own file-size limit; no pixels to bound
    if kind == "video_url":
        if media_type == "video/jpeg":
            return next(filter(None, map(image_refusal, data.split(","))), None)
        return video_refusal(data)
    # An image, or a URL under no media key: read as an image, else as a video, else refused.
    reason = image_refusal(data)
    if reason and kind is None and reason.endswith("cannot be read"):
        return video_refusal(data)
    return reason


def _decode(data: str, limit: int | None = None) -> bytes:
    return base64.b64decode(data if limit is None else data[:limit], validate=False)


def image_refusal(data: str) -> str | None:
    from PIL import Image

    try:
        with warnings.catch_warnings():  # a large size is answered below, not warned about in the log
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(_decode(data, 4 * MB))) as image:
                width, height = image.size
    except Image.DecompressionBombError as error:  # its header alone declares a bomb
        return f"an inline image too large to decode ({error})"
    except (binascii.Error, OSError, ValueError, SyntaxError):
        return "an inline image that cannot be read"
    if width * height > MAX_IMAGE_PIXELS:
        return f"an inline image of {width}x{height} pixels (at most {MAX_IMAGE_PIXELS} are decoded)"
    return None


def video_refusal(data: str) -> str | None:
    """A video file's frame size from its container's stream header (nothing is decoded)."""
    import av

    try:
        with av.open(io.BytesIO(_decode(data)), mode="r") as container:
            streams = container.streams.video
            if not streams:
                return "an inline video with no video stream"
            width, height = streams[0].codec_context.width, streams[0].codec_context.height
    except (binascii.Error, ValueError, OSError, av.FFmpegError):
        return "an inline video that cannot be read"
    if not width or not height:
        return "an inline video whose frame size cannot be read"
    if width * height > MAX_IMAGE_PIXELS:
        return f"an inline video of {width}x{height} pixels a frame (at most {MAX_IMAGE_PIXELS} are decoded)"
    return None


__all__ = ["MAX_IMAGE_PIXELS", "data_url_parts", "image_refusal", "media_refusal", "media_urls", "video_refusal"]
