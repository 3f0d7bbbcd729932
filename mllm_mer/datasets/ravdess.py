"""RAVDESS (Livingstone & Russo, 2018): labels come from the file names.

`03-01-06-01-02-01-12.mp4` = modality-channel-emotion-intensity-statement-repetition-actor.
Splits are speaker-independent: train actors 1-20, dev 21-22, test 23-24 (or `all`).
"""
from __future__ import annotations

import re
from pathlib import Path

from mllm_mer.core.types import Sample
from mllm_mer.datasets.base import DatasetError, Split, non_empty, require_dir

NAME = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")
EMOTIONS = {1: "neutral", 2: "calm", 3: "happy", 4: "sad", 5: "angry", 6: "fearful", 7: "disgust", 8: "surprised"}
STATEMENTS = {1: "Kids are talking by the door.", 2: "Dogs are sitting by the door."}
MODALITIES = {1: "audio-video", 2: "video-only", 3: "audio-only"}
ACTORS = {"train": range(1, 21), "dev": range(21, 23), "test": range(23, 25), "all": range(1, 25)}


def parse_name(stem: str) -> dict[str, object] | None:
    m = NAME.match(stem)
    if not m:
        return None
    modality, channel, emotion, intensity, statement, repetition, actor = (int(x) for x in m.groups())
    if emotion not in EMOTIONS or statement not in STATEMENTS:
        return None
    return {"modality": MODALITIES.get(modality, str(modality)), "channel": "speech" if channel == 1 else "song",
            "emotion": EMOTIONS[emotion], "intensity": "strong" if intensity == 2 else "normal",
            "statement": statement, "repetition": repetition, "actor": actor}


def load(data_dir: str | Path, split: str = "all", channel: str = "speech") -> Split:
    root = require_dir(data_dir, "RAVDESS directory")
    if split not in ACTORS:
        raise DatasetError(f"RAVDESS splits are {', '.join(ACTORS)}, not {split!r}")
    samples = []
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in (".mp4", ".wav")):
        info = parse_name(path.stem)
        if info is None or info["actor"] not in ACTORS[split] or info["channel"] != channel:
            continue
        is_video = path.suffix.lower() == ".mp4" and info["modality"] != "audio-only"
        samples.append(Sample(
            id=path.stem, transcript=STATEMENTS[info["statement"]], speaker=f"Actor {info['actor']:02d}",
            video=str(path) if is_video else None, audio=None if is_video else str(path),
            gold={"emotion": info["emotion"]}, metadata=info))
    return non_empty(f"ravdess/{split}", samples, labels="ravdess")
