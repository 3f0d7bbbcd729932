"""Audio as 16 kHz mono float32, from an audio file or a video's audio track (PyAV)."""
from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

import av
import numpy as np

from mllm_mer.media.decode import file_key, open_media
from mllm_mer.media.errors import MediaError, WindowOutside
from mllm_mer.media.frame_cache import media_cache
from mllm_mer.media.plans import drop_tracks, plan_tracks, planned_track

SAMPLE_RATE = 16_000


PREROLL = 0.2  # s decoded before a window's start and dropped: AAC needs the frame before to decode the first exactly
# Sound analysed per sample (vocal cues, transcript): an utterance lasts seconds, and 6000 characters of
# transcript are about 6 minutes of speech. A longer window, or a whole recording given without one, is read
# only this far, with a note: a 4-hour WAV is never decoded whole for one sample.
MAX_SOUND_SECONDS = 300.0


def load_audio(path: str, start: float | None = None, end: float | None = None, cache_gb: float = 0.0,
               notes: list[str] | None = None) -> np.ndarray:
    """The (windowed) audio track resampled to 16 kHz mono; MediaError when there is none. Kept on disk
    up to `cache_gb` GiB (media.frame_cache). `notes` gets a line when a damaged stream ended the read early."""
    cache = media_cache(cache_gb)
    key = ("audio", file_key(path), start, end)
    if cache is not None and os.path.isfile(path) and (hit := cache.get_array(key)) is not None:
        if notes is not None:
            notes.extend(cache.get_json((*key, "notes")) or ())
        return hit
    found: list[str] = []
    shared = planned_track(file_key(path))
    audio = shared.window(start, end, found) if shared is not None else decode_audio(path, start, end, found)
    if cache is not None:
        cache.put_array(key, audio)
        if found:
            cache.put_json((*key, "notes"), found)
    if notes is not None:
        notes.extend(found)
    return audio


def load_audio_upto(path: str, start: float | None, end: float | None, most: float, cache_gb: float = 0.0,
                    notes: list[str] | None = None) -> tuple[np.ndarray, float | None]:
    """The first `most` s of the window start-end, decoding no further: (audio, the window's full length in
    s when it was cut, else None; inf when the recording's length is not known)."""
    lo = start or 0.0
    if end is not None and end - lo <= most:
        return load_audio(path, start, end, cache_gb, notes), None
    # Bounded even when the header says the file is short: a header can be wrong, and the bound is one cache key.
    audio = load_audio(path, start, lo + most, cache_gb, notes)
    if audio.size < int(round(most * SAMPLE_RATE)):  # the recording ends inside the bound: nothing was cut
        return audio, None
    full = min(declared_seconds(path), end if end is not None else math.inf) - lo
    return audio, (full if full > most + 1.0 / SAMPLE_RATE else None)


def declared_seconds(path: str) -> float:
    """How long the container says it is, from its header (no decoding); inf when it does not say."""
    with open_media(path) as container:
        return container.duration / 1_000_000 if container.duration else math.inf  # AV_TIME_BASE units


def decode_audio(path: str, start: float | None, end: float | None, notes: list[str] | None = None) -> np.ndarray:
    with open_media(path) as container:
        return read_window(container, path, start, end, notes)


def read_window(container, path: str, start: float | None, end: float | None, notes: list[str] | None = None,
                rewind: bool = False) -> np.ndarray:
    """The window start-end of an open container's audio track, seeking to it (`rewind`: the container
    was read before, so even a window from 0 seeks): only the window is decoded, whatever the file's length."""
    if not container.streams.audio:
        raise MediaError(path, "no audio track")
    stream = container.streams.audio[0]
    lead = max(0.0, (start or 0.0) - PREROLL)
    if lead or rewind:
        container.seek(int(lead / stream.time_base), stream=stream, backward=True)
    chunks, first_time, broke = _decode_until(container, stream, end, path)
    audio = np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)
    del chunks  # a long window is held once, not twice
    if start and first_time is not None:  # trim the seek's lead-in
        audio = audio[max(0, int(round((start - first_time) * SAMPLE_RATE))):]
    if end is not None:
        audio = audio[: max(0, int(round((end - (start or 0.0)) * SAMPLE_RATE)))]
    if audio.size == 0 and start:
        raise WindowOutside(path, f"no sound in the window {start:.1f}-{end if end is not None else start:.1f} s")
    if audio.size == 0:
        raise MediaError(path, "zero-length audio")
    if broke and notes is not None:
        declared = container.duration / 1_000_000 if container.duration else math.inf  # AV_TIME_BASE units
        span = min(declared, end if end is not None else math.inf) - (start or 0.0)
        notes.append(f"{Path(path).name}: damaged sound, read {audio.size / SAMPLE_RATE:.1f} s"
                     + (f" of {span:.1f} s" if math.isfinite(span) else ""))
    return audio


def _decode_until(container, stream, end: float | None, path: str) -> tuple[list[np.ndarray], float | None, bool]:
    """(16 kHz mono chunks, the first frame's time, whether a damaged stream stopped the read) up to `end`."""
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
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
        return chunks, first_time, True
    return chunks, first_time, False


class SharedTrack:
    """A recording that many utterance windows read (`media.windows.shared_windows`): opened once for the
    run, each window seeked to and decoded on its own, so time and memory follow the windows, never the
    whole track (a 4-hour WAV is not decoded whole for a few utterances)."""

    def __init__(self, path: str):
        self.path = path
        self._lock = threading.Lock()  # one open container: its windows are read one at a time
        self._container = None
        self._closed = False

    def window(self, start: float | None, end: float | None, notes: list[str] | None = None) -> np.ndarray:
        with self._lock:
            if self._closed:  # a reader that took the track as the run ended: read alone
                return decode_audio(self.path, start, end, notes)
            if self._container is None:
                self._container = open_media(self.path)
            return read_window(self._container, self.path, start, end, notes, rewind=True)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._container is not None:
                self._container.close()
                self._container = None


@contextmanager
def shared_tracks(paths: Iterable[str]):
    """While the block runs, `load_audio` reads windows of these files from one open container each."""
    tracks = {file_key(path): SharedTrack(path) for path in paths}
    plan_tracks(tracks)
    try:
        yield
    finally:
        drop_tracks(tracks)
        for track in tracks.values():
            track.close()
