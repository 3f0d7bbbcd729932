"""Speech activity by silero-vad (the model ships in its wheel and runs on torch, offline).

It finds where someone speaks: the utterances of a recording without a transcript (split at pauses),
the speech inside a window before ASR or cues (so lead-in and trailing silence count for nothing).
"""
from __future__ import annotations

import threading
from functools import lru_cache

import numpy as np

from mllm_mer.media.audio import SAMPLE_RATE

VAD_VERSION = 1  # raise when the same audio gives other segments (the disk cache's key)
VAD_LOCK = threading.Lock()  # the JIT model keeps recurrent state between chunks: one caller at a time


@lru_cache(maxsize=1)
def _model():
    import warnings

    from silero_vad import load_silero_vad

    with warnings.catch_warnings():  # torch deprecates jit.load; the wheel's model is a TorchScript file
        warnings.simplefilter("ignore", DeprecationWarning)
        return load_silero_vad()


def speech_segments(audio: np.ndarray, min_pause: float = 0.5, max_length: float = 15.0,
                    min_speech: float = 0.25) -> list[tuple[float, float]]:
    """(start, end) seconds of speech, split where a pause lasts `min_pause` s or longer, and at
    `max_length` (what one ASR call should take)."""
    import torch
    from silero_vad import get_speech_timestamps

    if audio.size < SAMPLE_RATE // 10:
        return []
    with VAD_LOCK, torch.inference_mode():
        found = get_speech_timestamps(torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)), _model(),
                                      sampling_rate=SAMPLE_RATE, min_silence_duration_ms=int(min_pause * 1000),
                                      min_speech_duration_ms=int(min_speech * 1000), max_speech_duration_s=max_length,
                                      speech_pad_ms=30)
    return [(round(s["start"] / SAMPLE_RATE, 2), round(s["end"] / SAMPLE_RATE, 2)) for s in found]


def trim_silence(audio: np.ndarray) -> tuple[np.ndarray, float]:
    """The audio from the first speech to the last (pauses inside kept), and the seconds of speech in it;
    the whole audio when no speech is found."""
    segments = speech_segments(audio, min_pause=0.1, max_length=float("inf"), min_speech=0.1)
    if not segments:
        return audio, 0.0
    first, last = int(segments[0][0] * SAMPLE_RATE), int(segments[-1][1] * SAMPLE_RATE)
    return audio[first:last], float(sum(b - a for a, b in segments))


def cached_segments(path: str, audio: np.ndarray, cache_gb: float = 0.0) -> list[tuple[float, float]]:
    """`speech_segments` of a whole recording, kept in the media cache per file version."""
    from mllm_mer.media.decode import file_key
    from mllm_mer.media.frame_cache import media_cache

    cache = media_cache(cache_gb)
    key = ("vad", VAD_VERSION, file_key(path))
    if cache is not None and (hit := cache.get_json(key)) is not None:
        return [tuple(pair) for pair in hit]
    segments = speech_segments(audio)
    if cache is not None:
        cache.put_json(key, [list(pair) for pair in segments])
    return segments
