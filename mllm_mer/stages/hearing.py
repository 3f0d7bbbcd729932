"""The waveform for a model that hears (Omni families): the sample's audio file, or its clip's own track
in the utterance's window, at 16 kHz mono, cut to the family's audio window. The media stage has read
the same window for the cue text; the disk cache (on by default) serves this read, and runs over a
recording read its windows from one open file (`audio.shared_tracks`).

A clip without a sound track is answered from its frames and text, with a note; an audio file that
cannot be read is the sample's media failure, naming the file (`MediaError`)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from mllm_mer.core.types import MediaSettings, Sample
from mllm_mer.media import MediaError, audio
from mllm_mer.media.audio import SAMPLE_RATE, load_audio_upto
from mllm_mer.media.errors import WindowOutside
from mllm_mer.media.video import probe


def hear(sample: Sample, settings: MediaSettings, seconds: float) -> tuple[np.ndarray | None, list[str]]:
    """(waveform or None, notes) of what the model will hear of `sample`."""
    notes: list[str] = []
    if sample.audio:  # the utterance already, unless it is the only recording (a dialogue's --audio)
        source, window = sample.audio, ((sample.start, sample.end) if not sample.video else (None, None))
    elif sample.video and probe(sample.video, settings.media_cache_gb)[1]:
        source, window = sample.video, (sample.start, sample.end)
    else:
        if sample.video:
            notes.append(f"{Path(sample.video).name}: no sound track; answered from the frames and text")
        return None, notes
    try:  # the media stage's bounded read of the same window (one decode, one cache entry), never the whole file
        bound = max(seconds, audio.MAX_SOUND_SECONDS)
        wave, full = load_audio_upto(source, *window, bound, settings.media_cache_gb, notes)
    except WindowOutside as outside:
        return None, [f"{Path(source).name}: {outside.reason}"]
    if wave.size == 0:
        raise MediaError(source, "zero-length audio")
    most = int(seconds * SAMPLE_RATE)
    if len(wave) > most:
        notes.append(f"{Path(source).name}: audio cut from {_length(len(wave) / SAMPLE_RATE, full)} to {seconds:g} s "
                     "(the model's audio window)")
        wave = wave[:most]
    notes.append(f"heard {len(wave) / SAMPLE_RATE:.2f} s of audio from {Path(source).name}")
    return wave, notes


def _length(read: float, full: float | None) -> str:
    """The sound's length for a note: what was read, or the window's whole length when the read was bounded."""
    if full is None:
        return f"{read:.1f} s"
    return f"{full:.1f} s" if math.isfinite(full) else f"more than {read:.1f} s"
