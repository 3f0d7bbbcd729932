"""Paralinguistic cues from a waveform, put into words for the prompt.

The fallback where openSMILE cannot load (media.speech_cues); eGeMAPS (media.acoustic) is the default.
Loudness (RMS, dBFS) level and variation, pitch median and range (frame-wise
autocorrelation over voiced frames), pause ratio, and speech rate when a transcript
gives the word count. numpy only: cheap enough to run on every clip.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mllm_mer.media.audio import SAMPLE_RATE

FRAME = 0.040  # seconds per analysis frame
HOP = 0.020
PITCH_RANGE = (60.0, 500.0)  # Hz: human speaking voice


@dataclass(frozen=True)
class VocalCues:
    duration_s: float
    loudness_db: float  # mean frame RMS in dBFS
    loudness_var_db: float  # std of frame RMS in dB over voiced frames
    pitch_median_hz: float | None
    pitch_range_hz: float | None  # 10th..90th percentile span
    pause_ratio: float  # share of frames below the silence threshold
    speech_rate_wps: float | None  # words per second of speech, when a transcript is known

    def describe(self) -> str:
        level = "loud" if self.loudness_db > -15 else "quiet" if self.loudness_db < -35 else "moderate"
        parts = [f"duration {self.duration_s:.1f} s", f"{level} voice ({self.loudness_db:.0f} dBFS, "
                 f"variation {self.loudness_var_db:.1f} dB)"]
        if self.pitch_median_hz:
            height = "high" if self.pitch_median_hz > 220 else "low" if self.pitch_median_hz < 120 else "mid"
            parts.append(f"{height} pitch (median {self.pitch_median_hz:.0f} Hz, range {self.pitch_range_hz:.0f} Hz)")
        else:
            parts.append("no voiced pitch found")
        parts.append(f"pauses {100 * self.pause_ratio:.0f}% of the time")
        if self.speech_rate_wps is not None:
            pace = "fast" if self.speech_rate_wps > 3.5 else "slow" if self.speech_rate_wps < 1.8 else "normal"
            parts.append(f"{pace} speech ({self.speech_rate_wps:.1f} words/s)")
        return "; ".join(parts)


def _frames(audio: np.ndarray) -> np.ndarray:
    size, hop = int(FRAME * SAMPLE_RATE), int(HOP * SAMPLE_RATE)
    if audio.size < size:
        audio = np.pad(audio, (0, size - audio.size))
    count = 1 + (audio.size - size) // hop
    index = np.arange(size)[None, :] + hop * np.arange(count)[:, None]
    return audio[index]


def _pitch(frame: np.ndarray) -> float | None:
    frame = frame - frame.mean()
    corr = np.correlate(frame, frame, mode="full")[frame.size - 1:]
    if corr[0] <= 0:
        return None
    lo, hi = int(SAMPLE_RATE / PITCH_RANGE[1]), int(SAMPLE_RATE / PITCH_RANGE[0])
    window = corr[lo:hi]
    if window.size == 0:
        return None
    lag = lo + int(np.argmax(window))
    if corr[lag] / corr[0] < 0.5:  # weak periodicity: unvoiced
        return None
    # Parabolic interpolation around the peak for sub-sample lag precision.
    if 0 < lag < corr.size - 1:
        a, b, c = corr[lag - 1], corr[lag], corr[lag + 1]
        denom = a - 2 * b + c
        if denom:
            lag = lag + 0.5 * (a - c) / denom
    return SAMPLE_RATE / lag


def _silent(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frame loudness in dBFS, and which frames are silence (35 dB under the loudest, or under -60 dBFS)."""
    rms = np.sqrt(np.mean(frames ** 2, axis=1)) + 1e-10
    db = 20 * np.log10(rms)
    return db, db < max(db.max() - 35.0, -60.0)


def vocal_cues(audio: np.ndarray, transcript: str | None = None) -> VocalCues:
    frames = _frames(audio.astype(np.float64))
    db, silent = _silent(frames)
    voiced_db = db[~silent] if (~silent).any() else db
    pitches = [p for f, s in zip(frames, silent, strict=False) if not s and (p := _pitch(f)) is not None]
    duration = audio.size / SAMPLE_RATE
    speech_time = max(duration * (1 - silent.mean()), 1e-3)
    words = len(transcript.split()) if transcript else 0
    return VocalCues(
        duration_s=duration,
        loudness_db=float(voiced_db.mean()),
        loudness_var_db=float(voiced_db.std()),
        pitch_median_hz=float(np.median(pitches)) if pitches else None,
        pitch_range_hz=float(np.percentile(pitches, 90) - np.percentile(pitches, 10)) if pitches else None,
        pause_ratio=float(silent.mean()),
        speech_rate_wps=words / speech_time if words else None,
    )
