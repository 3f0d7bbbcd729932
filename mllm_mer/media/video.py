"""Video frames with PyAV: decode only what is sampled.

The packets are demuxed first (cheap, no decoding) to find the keyframes; each
sampled time is then decoded from the keyframe that governs it, so 8 frames of a
long clip cost a few GOPs of decoding, never the whole file. Runs in different GOPs
are independent and decode on separate threads.
"""
from __future__ import annotations

import bisect
import math
import os
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache

import av

from mllm_mer.media.errors import MediaError, WindowOutside

MAX_SOURCE_PIXELS = 3840 * 2160  # larger sources are refused (decoding cost, decompression bombs)
MAX_DECODE_THREADS = 4  # per clip; batches of clips gain more from parallel clips than from more threads


def decoders() -> int:
    """Threads one clip's independent GOP runs decode on."""
    return min(os.cpu_count() or 1, MAX_DECODE_THREADS)


def decode_cheaply(stream) -> None:
    """Approximate mode: skip the in-loop deblocking filter, before the codec opens.

    It is about a fifth of H.264/HEVC decoding at usual bitrates. The frames drift slightly from
    the exact ones (37 dB PSNR or more at the model's resolution on a crf 28 encode with 250-frame
    GOPs, see benchmarks.long_media); codecs without the option ignore it.
    """
    stream.codec_context.options = {"skip_loop_filter": "all"}


@dataclass(frozen=True)
class Frames:
    images: tuple  # PIL images, RGB, time order
    times: tuple[float, ...]  # seconds from the start of the file
    fps: float
    duration: float  # seconds of the file that can be read
    declared: float | None = None  # seconds the container says it holds (more when the file was cut short)


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


def probe(path: str, cache_gb: float = 0.0) -> tuple[bool, bool]:
    """(has a video stream, has an audio stream); MediaError for a missing or unreadable file."""
    from mllm_mer.media.frame_cache import media_cache

    cache = media_cache(cache_gb)
    key = ("probe", file_key(path))
    found = cache.get_json(key) if cache and os.path.isfile(path) else None
    if found is not None:
        return tuple(found)
    with _open(path) as container:
        streams = bool(container.streams.video), bool(container.streams.audio)
    if cache:
        cache.put_json(key, list(streams))
    return streams


def read_frames(path: str, n: int = 8, fps: float | None = None, start: float | None = None,
                end: float | None = None, max_pixels: int | None = None, keyframe_snap: float = 0.0,
                cache_gb: float = 0.0) -> Frames:
    """Sample frames from a video; cached per (file version, settings): in memory, and on disk up to
    `cache_gb` GiB (media.frame_cache).

    keyframe_snap > 0 trades exact positions for speed: a sampled time takes the keyframe
    within that fraction of the sampling interval instead, when there is one (a keyframe
    decodes alone, with no run-up).
    """
    from mllm_mer.media.frame_cache import media_cache
    from mllm_mer.media.windows import Window, frames_key, planned

    cache = media_cache(cache_gb)
    key = frames_key(path, Window(n, fps, start, end, keyframe_snap), max_pixels)
    if cache is not None and os.path.isfile(path) and (hit := cache.get_frames(key)) is not None:
        return hit
    # One pass over the file serves every window of it, where a run planned one (media.windows).
    frames = planned(path, Window(n, fps, start, end, keyframe_snap), max_pixels)
    if frames is None:
        frames = _read_frames_cached(file_key(path), n, fps, start, end, max_pixels, keyframe_snap)
    if cache is not None:
        cache.put_frames(key, frames)
    return frames


def file_key(path: str) -> tuple[str, int, int]:
    """A file version: (absolute path, mtime, size); an edited file is another key."""
    stat = os.stat(path) if os.path.exists(path) else None
    return os.path.abspath(path), stat.st_mtime_ns if stat else 0, stat.st_size if stat else -1


def snap_to_keyframes(targets: list[float], keyframes: list[float], tolerance: float) -> list[float]:
    """Move each target onto the nearest keyframe within `tolerance` s, never onto one already used."""
    used: set[float] = set()
    snapped = []
    for t in targets:
        i = bisect.bisect_left(keyframes, t)
        near = [k for k in keyframes[max(0, i - 1):i + 1] if abs(k - t) <= tolerance and k not in used]
        best = min(near, key=lambda k: abs(k - t)) if near else t
        if near:
            used.add(best)
        snapped.append(best)
    return snapped


@dataclass(frozen=True)
class VideoInfo:
    """What one demux pass learns about a file's video stream (no frame decoded)."""

    width: int
    height: int
    rate: float
    duration: float  # seconds that can be read
    declared: float | None  # seconds the container says it holds
    keyframes: tuple[float, ...]


_INFO: OrderedDict[tuple, VideoInfo] = OrderedDict()  # file version -> its index, most recent last
_INFO_SIZE = 64
_INFO_LOCK = threading.Lock()


def open_video(path: str):
    """The container, its video stream (frame-threaded) and its `VideoInfo`; MediaError for a file
    without a usable video stream. The caller closes the container.

    The index (keyframes, readable length) needs the whole file demuxed: 0.4 s for 10 minutes of
    720p. It is kept per file version in this process, so windows read one at a time (the agent's
    looks, the app) demux a long recording once.
    """
    container = _open(path)
    try:
        if not container.streams.video:
            raise MediaError(path, "no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        width, height = stream.codec_context.width, stream.codec_context.height
        if width * height > MAX_SOURCE_PIXELS:
            raise MediaError(path, f"resolution {width}x{height} exceeds the limit of {MAX_SOURCE_PIXELS} pixels")
        key = file_key(path)
        with _INFO_LOCK:
            info = _INFO.get(key)
            if info is not None:
                _INFO.move_to_end(key)
        if info is None:
            rate = float(stream.average_rate or stream.guessed_rate or 25)
            declared = container.duration / 1_000_000 if container.duration else None  # AV_TIME_BASE units
            keyframes, last = _keyframe_times(container, stream, path)
            duration = last + 1.0 / rate if last is not None else 0.0
            info = VideoInfo(width, height, rate, duration, declared, tuple(keyframes))
            with _INFO_LOCK:
                _INFO[key] = info
                while len(_INFO) > _INFO_SIZE:
                    _INFO.popitem(last=False)
    except BaseException:
        container.close()
        raise
    return container, stream, info


def window_targets(path: str, info: VideoInfo, n: int, fps: float | None, start: float | None, end: float | None,
                   keyframe_snap: float = 0.0) -> list[float]:
    """The times one window samples (snapped onto keyframes when allowed); WindowOutside or MediaError
    when there is nothing to sample."""
    targets = sample_times(info.duration, n, fps, start, end)
    if not targets and info.duration and start is not None:
        until = end if end is not None else info.duration
        raise WindowOutside(path, f"no frames in the window {start:.1f}-{until:.1f} s (the video holds "
                                  f"{info.duration:.1f} s)")
    if not targets:
        raise MediaError(path, "no frames in the requested window" if info.duration else "zero-length video")
    if keyframe_snap > 0 and len(targets) > 1:
        targets = snap_to_keyframes(targets, list(info.keyframes), keyframe_snap * (targets[1] - targets[0]))
    return targets


@lru_cache(maxsize=64)
def _read_frames_cached(key, n, fps, start, end, max_pixels, keyframe_snap=0.0) -> Frames:
    path = key[0]
    container, stream, info = open_video(path)
    with container:
        keyframes, rate = list(info.keyframes), info.rate
        targets = window_targets(path, info, n, fps, start, end, keyframe_snap)
        out_w, out_h = _fit(info.width, info.height, max_pixels)
        runs = _parallel_runs(keyframes, targets, rate, workers=decoders())
        approximate = keyframe_snap > 0  # the sampling mode allows a nearby frame: skip non-reference frames
        if len(runs) == 1:  # one run: decode here, with the codec's own frame threads
            images, times = _decode_at(container, stream, keyframes, targets, rate, out_w, out_h, approximate)
    if len(runs) > 1:
        images, times = _decode_runs_in_parallel(path, keyframes, runs, rate, out_w, out_h, approximate)
    if not images:
        raise MediaError(path, "no frame could be decoded")
    return Frames(tuple(images), tuple(times), rate, info.duration, info.declared)


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


def _parallel_runs(keyframes: list[float], targets: list[float], rate: float, workers: int) -> list[list[float]]:
    """Targets split into at most `workers` runs that share no GOP, balanced by run-up length.

    Targets under one keyframe stay together (one run-up serves them all); across GOPs the
    decoding is independent, so the runs can go to separate threads.
    """
    groups: dict[float, list[float]] = {}
    for t in targets:
        groups.setdefault(_governing_keyframe(keyframes, t, rate), []).append(t)
    runs: list[list[float]] = [[] for _ in range(min(workers, len(groups)))]
    load = [0.0] * len(runs)
    for key, ts in sorted(groups.items(), key=lambda g: g[0] - max(g[1])):  # longest run-up first
        i = load.index(min(load))
        runs[i] += ts
        load[i] += max(ts) - key + 1.0 / rate
    return [sorted(run) for run in runs if run]


def _decode_runs_in_parallel(path, keyframes, runs, rate, out_w, out_h, approximate=False):
    """Each run in its own thread and container (PyAV releases the GIL while decoding)."""
    def decode(run):
        with av.open(path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "NONE"  # the runs are the parallelism (frame threads would only contend)
            return _decode_at(container, stream, keyframes, run, rate, out_w, out_h, approximate)

    with ThreadPoolExecutor(len(runs)) as pool:
        decoded = sorted(((t, image) for images, times in pool.map(decode, runs)
                          for image, t in zip(images, times, strict=True)),
                         key=lambda pair: pair[0])
    return [image for _, image in decoded], [t for t, _ in decoded]


def _governing_keyframe(keyframes: list[float], t: float, rate: float) -> float:
    return keyframes[max(0, bisect.bisect_right(keyframes, t + 0.5 / rate) - 1)]


def _decode_at(container, stream, keyframes, targets, rate, out_w, out_h, approximate=False):
    """Decode the frame shown at each target time.

    From the governing keyframe up to shortly before a target, frames that no other
    frame references (most B-frames) are skipped by the decoder: they cannot affect
    the target, and skipping them roughly halves the run-up with default x264 GOPs.
    `approximate` (allowed when sampling snaps to keyframes) skips them near the target
    too: the frame given is the first reference frame at or after it, with its true time;
    and the deblocking filter is skipped (`decode_cheaply`).
    """
    if approximate:
        decode_cheaply(stream)
    images, times = [], []
    half = 0.5 / rate
    lead = max(8.0 / rate, 0.3)  # decode everything this close to a target (B-frame reordering)
    codec = stream.codec_context
    position = -math.inf  # time of the last decoded frame
    frames = None
    for t in targets:
        key = _governing_keyframe(keyframes, t, rate)
        if frames is None or key > position:
            codec.skip_frame = "NONREF" if approximate or t - key > lead else "DEFAULT"
            container.seek(int(key / stream.time_base), stream=stream, backward=True)
            frames = container.decode(stream)
        chosen = None
        try:
            for frame in frames:
                if frame.time is None:
                    continue
                position = frame.time
                codec.skip_frame = "NONREF" if approximate or t - frame.time > lead else "DEFAULT"
                if frame.time + half >= t:
                    chosen = frame
                    break
        except av.error.FFmpegError:
            break  # keep what decoded; a damaged tail loses only its own frames
        if chosen is None:
            break
        images.append(chosen.to_image(width=out_w, height=out_h))
        times.append(round(float(chosen.time), 3))
    codec.skip_frame = "DEFAULT"
    return images, times


def decode_all(path: str) -> int:
    """The naive baseline the media benchmark compares against: every frame decoded to RGB
    (what reading a whole clip into an array and then indexing it does)."""
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return sum(1 for frame in container.decode(stream) if frame.to_ndarray(format="rgb24") is not None)
