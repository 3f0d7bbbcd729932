"""Video frames with PyAV: decode only what is sampled.

The packets are demuxed first (cheap, no decoding) to find the keyframes; each
sampled time is then decoded from the keyframe that governs it, so 8 frames of a
long clip cost a few GOPs of decoding, never the whole file.
"""
from __future__ import annotations

import bisect
import math
import os
from dataclasses import dataclass
from functools import lru_cache

import av

from mllm_mer.media.errors import MediaError

MAX_SOURCE_PIXELS = 3840 * 2160  # larger sources are refused (decoding cost, decompression bombs)


@dataclass(frozen=True)
class Frames:
    images: tuple  # PIL images, RGB, time order
    times: tuple[float, ...]  # seconds from the start of the file
    fps: float
    duration: float  # seconds of the file


def sample_times(duration: float, n: int, fps: float | None = None, start: float | None = None,
                 end: float | None = None) -> list[float]:
    """Times to sample: n uniform (centres of n equal spans), or every 1/fps s (at most n)."""
    lo = max(0.0, start or 0.0)
    hi = min(duration, end) if end is not None else duration
    if hi <= lo:
        return []
    if fps:
        step = 1.0 / fps
        count = min(n, max(1, int((hi - lo) * fps)))
        return [lo + (i + 0.5) * step for i in range(count)]
    span = (hi - lo) / n
    return [lo + (i + 0.5) * span for i in range(n)]


def _open(path: str):
    if not os.path.exists(path):
        raise MediaError(path, "file not found")
    if os.path.getsize(path) == 0:
        raise MediaError(path, "empty file (0 bytes)")
    try:
        return av.open(path)
    except (av.error.InvalidDataError, av.error.FFmpegError, UnicodeDecodeError) as error:
        raise MediaError(path, f"not a readable media file ({error.__class__.__name__}: {error})") from None


def _fit(width: int, height: int, max_pixels: int | None) -> tuple[int, int]:
    if not max_pixels or width * height <= max_pixels:
        return width, height
    scale = math.sqrt(max_pixels / (width * height))
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


def has_video(path: str) -> bool:
    with _open(path) as container:
        return bool(container.streams.video)


def read_frames(path: str, n: int = 8, fps: float | None = None, start: float | None = None,
                end: float | None = None, max_pixels: int | None = None) -> Frames:
    """Sample frames from a video; cached per (file version, settings)."""
    stat = os.stat(path) if os.path.exists(path) else None
    key = (os.path.abspath(path), stat.st_mtime_ns if stat else 0, stat.st_size if stat else -1)
    return _read_frames_cached(key, n, fps, start, end, max_pixels)


@lru_cache(maxsize=64)
def _read_frames_cached(key, n, fps, start, end, max_pixels) -> Frames:
    path = key[0]
    with _open(path) as container:
        if not container.streams.video:
            raise MediaError(path, "no video stream")
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        if width * height > MAX_SOURCE_PIXELS:
            raise MediaError(path, f"resolution {width}x{height} exceeds the limit of {MAX_SOURCE_PIXELS} pixels")
        rate = float(stream.average_rate or stream.guessed_rate or 25)
        keyframes, last = _keyframe_times(container, stream, path)
        duration = last + 1.0 / rate if last is not None else 0.0
        targets = sample_times(duration, n, fps, start, end)
        if not targets:
            raise MediaError(path, "no frames in the requested window" if duration else "zero-length video")
        out_w, out_h = _fit(width, height, max_pixels)
        images, times = _decode_at(container, stream, keyframes, targets, rate, out_w, out_h)
    if not images:
        raise MediaError(path, "no frame could be decoded")
    return Frames(tuple(images), tuple(times), rate, duration)


def _keyframe_times(container, stream, path) -> tuple[list[float], float | None]:
    keyframes: list[float] = []
    last = None
    try:
        for packet in container.demux(stream):
            if packet.pts is None:
                continue
            t = float(packet.pts * packet.time_base)
            if packet.is_keyframe:
                keyframes.append(t)
            last = t if last is None else max(last, t)
    except av.error.FFmpegError as error:
        raise MediaError(path, f"corrupt video stream ({error})") from None
    return sorted(keyframes) or [0.0], last


def _decode_at(container, stream, keyframes, targets, rate, out_w, out_h):
    images, times = [], []
    half = 0.5 / rate
    position = -math.inf  # time of the last decoded frame
    frames = None
    for t in targets:
        key = keyframes[max(0, bisect.bisect_right(keyframes, t + half) - 1)]
        if frames is None or key > position:
            container.seek(int(key / stream.time_base), stream=stream, backward=True)
            frames = container.decode(stream)
        chosen = None
        try:
            for frame in frames:
                if frame.time is None:
                    continue
                position = frame.time
                if frame.time + half >= t:
                    chosen = frame
                    break
        except av.error.FFmpegError:
            break  # keep what decoded; a damaged tail loses only its own frames
        if chosen is None:
            break
        images.append(chosen.to_image(width=out_w, height=out_h))
        times.append(round(float(chosen.time), 3))
    return images, times


def decode_all(path: str) -> int:
    """Decode every frame (the naive baseline the media benchmark compares against)."""
    with _open(path) as container:
        return sum(1 for _ in container.decode(container.streams.video[0]))
