"""Audio as 16 kHz mono float32, from an audio file or a video's audio track (PyAV)."""
from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from contextlib import contextmanager

import av
import numpy as np

from mllm_mer.media.decode import file_key, open_media
from mllm_mer.media.errors import MediaError, WindowOutside
from mllm_mer.media.frame_cache import media_cache
from mllm_mer.media.plans import drop_tracks, plan_tracks, planned_track

SAMPLE_RATE = 16_000


def load_audio(path: str, start: float | None = None, end: float | None = None, cache_gb: float = 0.0
               ) -> np.ndarray:
    """The (windowed) audio track resampled to 16 kHz mono; MediaError when there is none. Kept on disk
    up to `cache_gb` GiB (media.frame_cache)."""
    cache = media_cache(cache_gb)
    key = ("audio", file_key(path), start, end)
    if cache is not None and os.path.isfile(path) and (hit := cache.get_array(key)) is not None:
        return hit
    shared = planned_track(file_key(path))
    audio = shared.window(start, end) if shared is not None else decode_audio(path, start, end)
    if cache is not None:
        cache.put_array(key, audio)
    return audio


def decode_audio(path: str, start: float | None, end: float | None) -> np.ndarray:
    with open_media(path) as container:
        if not container.streams.audio:
            raise MediaError(path, "no audio track")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        if start:
            container.seek(int(start / stream.time_base), stream=stream, backward=True)
        chunks, first_time = [], None
        try:
            for frame in container.decode(stream):
                if first_time is None and frame.time is not None:
                    first_time = frame.time
                if end is not None and frame.time is not None and frame.time > end:
                    break
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except av.error.FFmpegError as error:
            if not chunks:
                raise MediaError(path, f"corrupt audio stream ({error})") from None
    audio = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    if start and first_time is not None:  # trim the seek's lead-in
        audio = audio[max(0, int(round((start - first_time) * SAMPLE_RATE))):]
    if end is not None:
        audio = audio[: max(0, int(round((end - (start or 0.0)) * SAMPLE_RATE)))]
    if audio.size == 0 and start:
        raise WindowOutside(path, f"no sound in the window {start:.1f}-{end if end is not None else start:.1f} s")
    if audio.size == 0:
        raise MediaError(path, "zero-length audio")
    return audio


class SharedTrack:
    """A recording's whole audio track, decoded and resampled once (on first demand) and sliced per
    window, for runs over many utterances of one file (`media.windows.shared_windows`)."""

    def __init__(self, path: str):
        self.path = path
        self._lock = threading.Lock()
        self._waveform: np.ndarray | None = None

    def window(self, start: float | None, end: float | None) -> np.ndarray:
        with self._lock:
            if self._waveform is None:
                self._waveform = decode_audio(self.path, None, None)
        first = int(round((start or 0.0) * SAMPLE_RATE))
        last = None if end is None else max(first, int(round(end * SAMPLE_RATE)))
        audio = self._waveform[first:last]
        if audio.size == 0 and start:
            raise WindowOutside(self.path, f"no sound in the window {start:.1f}-"
                                           f"{end if end is not None else start:.1f} s")
        return audio


@contextmanager
def shared_tracks(paths: Iterable[str]):
    """While the block runs, `load_audio` slices windows of these files from one decoded track each."""
    tracks = {file_key(path): SharedTrack(path) for path in paths}
    plan_tracks(tracks)
    try:
        yield
    finally:
        drop_tracks(tracks)
