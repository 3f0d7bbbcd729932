"""A recording's transcript file -> ordered utterances -> one Sample per utterance.

Transcript files: SRT (the `srt` library), WebVTT (`webvtt-py`; the speaker from `<v Name>` or a
`Name:` prefix) or JSONL turns (`speaker`, `start`, `end`, `text`). Without a transcript, speech
segments of the recording are transcribed by Whisper.
"""
from __future__ import annotations

import io
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mllm_mer.core.types import Sample

MAX_SECONDS = 7 * 24 * 3600.0  # a week: any longer "time" is a broken file, not a recording
_PREFIX_SPEAKER = re.compile(r"^\s*([A-Z][\w .'-]{0,40}):\s+(.*)$", re.DOTALL)


class TranscriptError(ValueError):
    """A transcript file that cannot be read as utterances; names the file and the cue."""


@dataclass(frozen=True)
class Utterance:
    speaker: str | None
    start: float
    end: float
    text: str


def _seconds(stamp: str) -> float:
    parts = [float(p) for p in stamp.replace(",", ".").split(":")]
    value = 0.0
    for part in parts:
        value = value * 60 + part
    return value


def _speaker_and_text(text: str, voice: str | None = None) -> tuple[str | None, str]:
    text = " ".join(text.split())
    if voice:
        return voice.strip(), text
    match = _PREFIX_SPEAKER.match(text)
    return (match.group(1).strip(), match.group(2).strip()) if match else (None, text)


def read_transcript(path: str | Path) -> list[Utterance]:
    """Utterances in time order from an .srt, .vtt or .jsonl file; errors name the file and the cue."""
    path = Path(path)
    if not path.is_file():
        raise TranscriptError(f"{path}: no such transcript file")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = path.read_bytes()[:error.start].count(b"\n") + 1
        raise TranscriptError(f"{path}:{line}: not UTF-8 text (save the transcript as UTF-8)") from None
    suffix = path.suffix.lower()
    if suffix == ".srt":
        utterances = _srt(path, text)
    elif suffix == ".vtt":
        utterances = _vtt(path, text)
    elif suffix == ".jsonl":
        utterances = _jsonl(path, text)
    else:
        raise TranscriptError(f"{path}: a transcript must be .srt, .vtt or .jsonl")
    if not utterances:
        raise TranscriptError(f"{path}: no utterances")
    for number, (before, after) in enumerate(zip(utterances, utterances[1:], strict=False), 2):
        if after.start < before.start:
            raise TranscriptError(f"{path}: cue {number} starts at {after.start:.2f} s, before cue {number - 1} "
                                  f"({before.start:.2f} s); cues must be in time order")
    for number, u in enumerate(utterances, 1):
        if u.end <= u.start:
            raise TranscriptError(f"{path}: cue {number} ends ({u.end:.2f} s) before it starts ({u.start:.2f} s)")
    return utterances


def _srt(path: Path, text: str) -> list[Utterance]:
    import srt

    try:
        cues = list(srt.parse(text))
    except srt.SRTParseError as error:
        raise TranscriptError(f"{path}: not a readable SRT file ({error})") from None
    out = []
    for c in cues:
        speaker, said = _speaker_and_text(c.content)
        out.append(Utterance(speaker, c.start.total_seconds(), c.end.total_seconds(), said))
    return out


def _vtt(path: Path, text: str) -> list[Utterance]:
    import webvtt

    try:
        captions = webvtt.from_buffer(io.StringIO(text))
    except Exception as error:  # webvtt raises its own MalformedFileError / MalformedCaptionError
        raise TranscriptError(f"{path}: not a readable WebVTT file ({error})") from None
    out = []
    for c in captions:
        speaker, said = _speaker_and_text(c.text, getattr(c, "voice", None))
        out.append(Utterance(speaker, _seconds(c.start), _seconds(c.end), said))
    return out


def _jsonl(path: Path, text: str) -> list[Utterance]:
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict):
                raise TypeError("not an object")
            start, end = float(row["start"]), float(row["end"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, RecursionError):
            raise TranscriptError(f"{path}:{number}: expected {{speaker, start, end, text}}") from None
        if not (math.isfinite(start) and math.isfinite(end)) or max(abs(start), abs(end)) > MAX_SECONDS:
            raise TranscriptError(f"{path}:{number}: start and end must be seconds within the recording "
                                  f"(got {row['start']!r}, {row['end']!r})")
        said = row.get("text")
        speaker = row.get("speaker")
        out.append(Utterance(str(speaker) if speaker not in (None, "") else None, start, end,
                             str(said) if said is not None else ""))
    return out


def asr_utterances(path: str, asr_model: str, cache_gb: float = 0.0) -> list[Utterance]:
    """Utterances of a recording without a transcript: speech segments (silero-vad, split at pauses),
    each transcribed by Whisper; who speaks is unknown and the samples say so."""
    from mllm_mer.media import MediaError
    from mllm_mer.media.asr import transcribe
    from mllm_mer.media.audio import SAMPLE_RATE, load_audio
    from mllm_mer.media.vad import cached_segments

    wave = load_audio(path, cache_gb=cache_gb)
    segments = cached_segments(path, wave, cache_gb)
    if not segments:
        raise MediaError(path, "no speech found to split into utterances")
    return [Utterance(None, start, end, transcribe(wave[int(start * SAMPLE_RATE):int(end * SAMPLE_RATE)], asr_model))
            for start, end in segments]


def utterance_samples(utterances: Sequence[Utterance], video: str | None = None, audio: str | None = None,
                      prefix: str = "u") -> list[Sample]:
    """One Sample per utterance, with its window of the recording."""
    return [Sample(id=f"{prefix}{i:04d}", transcript=u.text or None, speaker=u.speaker or "unknown speaker",
                   video=video, audio=audio, start=u.start, end=u.end, metadata={"turn": i})
            for i, u in enumerate(utterances)]
