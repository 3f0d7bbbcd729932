"""Vocal cues for a window of sound: eGeMAPS numbers (cached per file version and window) put into
words, or the hand-made extractor (`media.cues`) where openSMILE cannot load, with a note."""
from __future__ import annotations

import numpy as np

from mllm_mer.media.acoustic import EGEMAPS_VERSION, OpenSmileUnavailable, describe, egemaps
from mllm_mer.media.decode import file_key
from mllm_mer.media.errors import MediaError
from mllm_mer.media.frame_cache import media_cache


def features_for(waveform: np.ndarray, source: tuple | None = None, cache_gb: float = 0.0) -> dict[str, float]:
    """The eGeMAPS numbers of `waveform`; `source` (path, start, end) names it for the disk cache."""
    cache = media_cache(cache_gb) if source else None
    key = ("egemaps", EGEMAPS_VERSION, file_key(source[0]), *source[1:]) if cache is not None else None
    if key is not None and (hit := cache.get_json(key)) is not None:
        return hit
    try:
        numbers = egemaps(waveform)
    except (RuntimeError, ValueError) as error:  # SMILExtract refusing the signal: this sample's error, not a crash
        if isinstance(error, OpenSmileUnavailable):
            raise
        raise MediaError(source[0] if source else "audio", f"eGeMAPS could not analyse the sound ({error})") from None
    if key is not None:
        cache.put_json(key, numbers)
    return numbers


def cues_for(waveform: np.ndarray, source: tuple | None, transcript: str | None, baseline: dict | None,
             cache_gb: float, notes: list[str]) -> tuple[str, dict | None]:
    """(cue words, the numbers behind them); speaker-relative words where `baseline` is given."""
    try:
        numbers = features_for(waveform, source, cache_gb)
    except OpenSmileUnavailable as error:
        from mllm_mer.media.cues import vocal_cues

        notes.append(f"{error}; vocal cues from the basic extractor")
        return vocal_cues(waveform, transcript).describe(), None
    return describe(numbers, baseline or None), numbers
