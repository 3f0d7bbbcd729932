"""IEMOCAP (Busso et al., 2008): EmoEvaluation labels, transcriptions, sentence wavs, dialogue videos.

Splits are leave-one-session-out: `session5` is session 5, `all-but-session5` the
other four; `all` is everything. 6-way labels (neu hap sad ang exc fru) or 4-way
(excited merged into happy); utterances with other labels are left out, as usual.
"""
from __future__ import annotations

import re
from pathlib import Path

from mllm_mer.core.types import Sample, Turn
from mllm_mer.datasets.base import DatasetError, Split, context_window, non_empty, require_dir

LABEL_LINE = re.compile(r"^\[(\d+\.?\d*)\s*-\s*(\d+\.?\d*)\]\s+(\S+)\s+(\S+)\s+\[")
TRANSCRIPT_LINE = re.compile(r"^(\S+)\s+\[[\d.]+-[\d.]+\]:\s*(.*)$")
CODES = {"neu": "neutral", "hap": "happy", "sad": "sad", "ang": "angry", "exc": "excited", "fru": "frustrated"}
FOUR_WAY = {"excited": "happy", "frustrated": None}


def _sessions(root: Path, split: str) -> list[int]:
    if split == "all":
        return [1, 2, 3, 4, 5]
    match = re.fullmatch(r"(all-but-)?session([1-5])", split)
    if not match:
        raise DatasetError(f"IEMOCAP splits are all, sessionN or all-but-sessionN (N in 1..5), not {split!r}")
    n = int(match.group(2))
    return [s for s in range(1, 6) if s != n] if match.group(1) else [n]


def load(data_dir: str | Path, split: str, ways: int = 6, context: int = 5) -> Split:
    if ways not in (4, 6):
        raise DatasetError("IEMOCAP label sets are 4-way or 6-way")
    root = require_dir(data_dir, "IEMOCAP directory")
    samples = []
    for session in _sessions(root, split):
        base = root / f"Session{session}"
        if not base.is_dir():
            continue
        texts: dict[str, str] = {}
        for path in sorted((base / "dialog" / "transcriptions").glob("*.txt")):
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                if m := TRANSCRIPT_LINE.match(line.strip()):
                    texts[m.group(1)] = m.group(2).strip()
        for path in sorted((base / "dialog" / "EmoEvaluation").glob("*.txt")):
            dialogue = path.stem
            entries = []
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                if m := LABEL_LINE.match(line.strip()):
                    entries.append((float(m.group(1)), float(m.group(2)), m.group(3), m.group(4)))
            entries.sort()
            turns = [Turn(speaker=_speaker(uid), text=texts.get(uid, "")) for _, _, uid, _ in entries]
            video = next((str(p) for p in (base / "dialog" / "avi").rglob(f"{dialogue}.avi")), None) \
                if (base / "dialog" / "avi").is_dir() else None
            for i, (start, end, uid, code) in enumerate(entries):
                label = CODES.get(code)
                if ways == 4 and label is not None:
                    label = FOUR_WAY.get(label, label)
                if label is None:
                    continue
                wav = base / "sentences" / "wav" / dialogue / f"{uid}.wav"
                samples.append(Sample(
                    id=uid, transcript=turns[i].text, speaker=turns[i].speaker,
                    context=context_window(turns, i, context), video=video, start=start, end=end,
                    audio=str(wav) if wav.is_file() else None, gold={"emotion": label},
                    metadata={"session": session, "dialogue": dialogue, "code": code}))
    if not any((root / f"Session{s}").is_dir() for s in range(1, 6)):
        raise DatasetError(f"{root}: no Session1..Session5 folders (is this the IEMOCAP_full_release folder?)")
    return non_empty(f"iemocap{ways}/{split}", samples, labels=f"iemocap{ways}")


def _speaker(utterance_id: str) -> str:
    """Ses01F_impro01_F000 -> 'F' speaker (the actor's gender letter of that turn)."""
    tail = utterance_id.rsplit("_", 1)[-1]
    return {"F": "Female speaker", "M": "Male speaker"}.get(tail[:1], tail[:1])
