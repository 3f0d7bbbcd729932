"""Video frames with PyAV: decode only what is sampled.

The packets are demuxed first (cheap, no decoding) to find the keyframes; each
sampled time is then decoded from the keyframe that governs it, so 8 frames of a
long clip cost a few GOPs of decoding, never the whole file. Runs in different GOPs
are independent and decode on separate threads.
"""
from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import av

from mllm_mer.media.decode import (
    Frames,
    Window,
    decode_cheaply,
    decoders,
    file_key,
    fit_size,
    frames_key,
    governing_keyframe,
    open_media,
    open_video,
    window_targets,
)
from mllm_mer.media.errors import MediaError
from mllm_mer.media.frame_cache import media_cache
from mllm_mer.media.plans import take_pass


def probe(path: str, cache_gb: float = 0.0) -> tuple[bool, bool]:
    """(has a video stream, has an audio stream); MediaError for a missing or unreadable file."""
    cache = media_cache(cache_gb)
    key = ("probe", file_key(path))
    found = cache.get_json(key) if cache and os.path.isfile(path) else None
    if found is not None:
        return tuple(found)
    with open_media(path) as container:
        streams = bool(container.streams.video), bool(container.streams.audio)
    if cache:
        cache.put_json(key, list(streams))
    return streams


def recording_seconds(path: str) -> float | None:
    """How long a recording lasts: the container's declared length, else its video's readable length
    (None when neither is known); MediaError for a missing or unreadable file."""
    with open_media(path) as container:
        if container.duration:
            return container.duration / 1_000_000  # AV_TIME_BASE units
        has_video = bool(container.streams.video)
    if not has_video:
        return None
    container, _, info = open_video(path)
    container.close()
    return info.duration or None


def read_frames(path: str, n: int = 8, fps: float | None = None, start: float | None = None,
                end: float | None = None, max_pixels: int | None = None, keyframe_snap: float = 0.0,
                cache_gb: float = 0.0) -> Frames:
    """Sample frames from a video; cached per (file version, settings): in memory, and on disk up to
    `cache_gb` GiB (media.frame_cache).

    keyframe_snap > 0 trades exact positions for speed: a sampled time takes the keyframe
    within that fraction of the sampling interval instead, when there is one (a keyframe
    decodes alone, with no run-up).
    """
    cache = media_cache(cache_gb)
    key = frames_key(path, Window(n, fps, start, end, keyframe_snap), max_pixels)
    if cache is not None and os.path.isfile(path) and (hit := cache.get_frames(key)) is not None:
        return hit
    # One pass over the file serves every window of it, where a run planned one (media.windows).
    window = Window(n, fps, start, end, keyframe_snap)
    shared = take_pass((file_key(path), window, max_pixels))
    frames = shared.frames(window) if shared is not None else None  # None: closed first, decode alone
    if frames is None:
        frames = decode_window(file_key(path), n, fps, start, end, max_pixels, keyframe_snap)
    if cache is not None:
        cache.put_frames(key, frames)
    return frames


@lru_cache(maxsize=64)
def decode_window(key, n, fps, start, end, max_pixels, keyframe_snap=0.0) -> Frames:
    return decode_uncached(key, n, fps, start, end, max_pixels, keyframe_snap)


def decode_uncached(key, n, fps, start, end, max_pixels, keyframe_snap=0.0, convert=None) -> Frames:
    """The window's frames, each as `convert(frame, width, height)` gives it (default: an RGB image)."""
    path = key[0]
    container, stream, info = open_video(path)
    with container:
        keyframes, rate = list(info.keyframes), info.rate
        targets = window_targets(path, info, n, fps, start, end, keyframe_snap)
        out_w, out_h = fit_size(info.width, info.height, max_pixels)
        runs = parallel_runs(keyframes, targets, rate, workers=decoders())
        approximate = keyframe_snap > 0  # the sampling mode allows a nearby frame: skip non-reference frames
        if len(runs) == 1:  # one run: decode here, with the codec's own frame threads
            images, times = decode_at(container, stream, keyframes, targets, rate, out_w, out_h, approximate,
                                      convert)
            missing = targets[len(images):]  # a run stops at its first undecodable frame
    if len(runs) > 1:
        images, times, missing = decode_runs_in_parallel(path, keyframes, runs, rate, out_w, out_h, approximate,
                                                          convert)
    if not images:
        raise MediaError(path, "no frame could be decoded")
    return Frames(tuple(images), tuple(times), rate, info.duration, info.declared, tuple(missing))


def parallel_runs(keyframes: list[float], targets: list[float], rate: float, workers: int) -> list[list[float]]:
    """Targets split into at most `workers` runs that share no GOP, balanced by run-up length.

    Targets under one keyframe stay together (one run-up serves them all); across GOPs the
    decoding is independent, so the runs can go to separate threads.
    """
    groups: dict[float, list[float]] = {}
    for t in targets:
        groups.setdefault(governing_keyframe(keyframes, t, rate), []).append(t)
    runs: list[list[float]] = [[] for _ in range(min(workers, len(groups)))]
    load = [0.0] * len(runs)
    for key, ts in sorted(groups.items(), key=lambda g: g[0] - max(g[1])):  # longest run-up first
        i = load.index(min(load))
        runs[i] += ts
        load[i] += max(ts) - key + 1.0 / rate
    return [sorted(run) for run in runs if run]


def decode_runs_in_parallel(path, keyframes, runs, rate, out_w, out_h, approximate=False, convert=None):
    """Each run in its own thread and container (PyAV releases the GIL while decoding): (images, times,
    the sampled times a damaged stream lost)."""
    def decode(run):
        with av.open(path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "NONE"  # the runs are the parallelism (frame threads would only contend)
            return decode_at(container, stream, keyframes, run, rate, out_w, out_h, approximate, convert)

    with ThreadPoolExecutor(len(runs)) as pool:
        results = list(pool.map(decode, runs))
    decoded = sorted(((t, image) for images, times in results for image, t in zip(images, times, strict=True)),
                     key=lambda pair: pair[0])
    missing = sorted(t for run, (images, _) in zip(runs, results, strict=True) for t in run[len(images):])
    return [image for _, image in decoded], [t for t, _ in decoded], missing


def decode_at(container, stream, keyframes, targets, rate, out_w, out_h, approximate=False, convert=None):
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
        key = governing_keyframe(keyframes, t, rate)
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
        images.append(convert(chosen, out_w, out_h) if convert else chosen.to_image(width=out_w, height=out_h))
        times.append(round(float(chosen.time), 3))
    codec.skip_frame = "DEFAULT"
    return images, times


