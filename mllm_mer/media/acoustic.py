"""Vocal cues from openSMILE's eGeMAPS (v02) functionals, the parameter set emotion research reports.

Silence is trimmed by the voice-activity model first, so lead-in and trailing silence change neither
the pause share nor the pace. Words come from the numbers in two ways: relative to the speaker's own
median where a baseline exists (a dialogue, the utterance around a listened window), else only words
that hold for any voice (pitch *range* in semitones, pace, pauses), never an absolute "high pitch"
that a neutral female voice would trip.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import lru_cache
from statistics import median

import numpy as np

from mllm_mer.media.audio import SAMPLE_RATE

# eGeMAPS column -> the record's name for it
COLUMNS = {
    "F0semitoneFrom27.5Hz_sma3nz_amean": "f0_mean_st",
    "F0semitoneFrom27.5Hz_sma3nz_pctlrange0-2": "f0_range_st",
    "loudness_sma3_amean": "loudness",
    "jitterLocal_sma3nz_amean": "jitter",
    "shimmerLocaldB_sma3nz_amean": "shimmer_db",
    "HNRdBACF_sma3nz_amean": "hnr_db",
    "slopeV0-500_sma3nz_amean": "spectral_slope",
    "VoicedSegmentsPerSec": "voiced_segments_per_s",
}
EGEMAPS_VERSION = 1  # raise when the numbers computed for the same audio change (the disk cache's key)
SMILE_LOCK = threading.Lock()
MIN_SPEECH_S = 0.3  # less speech than this: no cues worth stating


class OpenSmileUnavailable(RuntimeError):
    """openSMILE could not load here; the media stage falls back to `media.cues`."""


@lru_cache(maxsize=1)
def _smile():
    try:
        import opensmile

        return opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                               feature_level=opensmile.FeatureLevel.Functionals)
    except Exception as error:  # a missing wheel or SMILExtract binary: the fallback extractor takes over
        raise OpenSmileUnavailable(f"openSMILE could not load ({error.__class__.__name__}: {error})") from None


def egemaps(audio: np.ndarray) -> dict[str, float]:
    """The chosen eGeMAPS functionals of the speech in `audio`, plus duration, speech time, pause share
    and pace (voiced segments per second of speech, the set's speaking-rate measure)."""
    from mllm_mer.media.vad import trim_silence

    duration = audio.size / SAMPLE_RATE
    speech, speech_s = trim_silence(audio)
    numbers = {"duration_s": round(duration, 2), "speech_s": round(speech_s, 2)}
    if speech_s < MIN_SPEECH_S or speech.size < SAMPLE_RATE // 4:
        return numbers
    smile = _smile()
    with SMILE_LOCK:
        row = smile.process_signal(speech.astype(np.float32), SAMPLE_RATE).iloc[0]
    for column, name in COLUMNS.items():
        numbers[name] = round(float(row[column]), 4)
    trimmed = speech.size / SAMPLE_RATE
    numbers["pause_ratio"] = round(max(0.0, 1.0 - speech_s / trimmed), 3)
    numbers["speaking_rate"] = round(numbers["voiced_segments_per_s"] * trimmed / speech_s, 3)
    numbers["f0_hz"] = round(27.5 * 2 ** (numbers["f0_mean_st"] / 12), 1) if numbers["f0_mean_st"] > 0 else 0.0
    return numbers


def baseline(features: list[dict[str, float]]) -> dict[str, float]:
    """A speaker's own reference: the median of each number over their utterances that had speech."""
    voiced = [f for f in features if f.get("f0_mean_st")]
    keys = ("f0_mean_st", "f0_range_st", "loudness", "speaking_rate")
    return {k: round(median(f[k] for f in voiced), 4) for k in keys} if voiced else {}


@dataclass(frozen=True)
class Relative:
    """How far a number must move from the speaker's median to be worth a word."""

    pitch_st: float = 1.5  # semitones
    range_ratio: float = 1.3
    loudness_ratio: float = 1.2
    rate_ratio: float = 1.15


def describe(numbers: dict[str, float], reference: dict[str, float] | None = None,
             margin: Relative = Relative()) -> str:
    """The cue words for the prompt."""
    if not numbers.get("f0_mean_st"):
        return f"duration {numbers['duration_s']:.1f} s; no clear speech found"
    words = [f"duration {numbers['duration_s']:.1f} s, speech {numbers['speech_s']:.1f} s"]
    if reference:
        words += _relative(numbers, reference, margin)
    else:
        st = numbers["f0_range_st"]
        spread = "flat" if st < 2.0 else "wide" if st > 7.0 else "moderate"
        words.append(f"{spread} pitch range ({st:.1f} semitones, median {numbers['f0_hz']:.0f} Hz)")
        rate = numbers["speaking_rate"]
        pace = "fast" if rate > 4.0 else "slow" if rate < 1.8 else "normal"
        words.append(f"{pace} pace ({rate:.1f} voiced segments/s)")
    words.append(f"pauses {100 * numbers['pause_ratio']:.0f}% of the speech")
    words.append(f"jitter {100 * numbers['jitter']:.1f}%, shimmer {numbers['shimmer_db']:.1f} dB, "
                 f"HNR {numbers['hnr_db']:.1f} dB")
    return "; ".join(words)


def _relative(numbers: dict[str, float], ref: dict[str, float], margin: Relative) -> list[str]:
    words = []
    step = numbers["f0_mean_st"] - ref["f0_mean_st"]
    height = "higher" if step > margin.pitch_st else "lower" if step < -margin.pitch_st else "usual"
    words.append(f"{height} pitch than this speaker's median ({step:+.1f} semitones, {numbers['f0_hz']:.0f} Hz)"
                 if height != "usual" else f"this speaker's usual pitch ({numbers['f0_hz']:.0f} Hz)")
    words.append(_compare("pitch range", numbers["f0_range_st"], ref["f0_range_st"], margin.range_ratio,
                          ("wider", "narrower")))
    words.append(_compare("voice", numbers["loudness"], ref["loudness"], margin.loudness_ratio, ("louder", "softer")))
    words.append(_compare("pace", numbers["speaking_rate"], ref["speaking_rate"], margin.rate_ratio,
                          ("faster", "slower")))
    return words


def _compare(what: str, value: float, ref: float, ratio: float, names: tuple[str, str]) -> str:
    if ref > 0 and value > ref * ratio:
        return f"{names[0]} {what} than this speaker's median (x{value / ref:.2f})"
    if ref > 0 and value * ratio < ref:
        return f"{names[1]} {what} than this speaker's median (x{value / ref:.2f})"
    return f"usual {what}"
