"""What every loader shares: Sample <-> datasets.Dataset rows, text repair, split errors.

Loaders only map a release's columns and layout onto Samples; everything else
(media, prompts, metrics) is downstream and the same for all of them.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ftfy

from mllm_mer.core.types import Sample, Turn

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm")


class DatasetError(ValueError):
    """A dataset that cannot be loaded as asked: missing files, unknown split, empty split."""


@dataclass(frozen=True)
class Split:
    """A loaded split: its samples and the label set they are annotated with."""

    name: str
    samples: tuple[Sample, ...]
    labels: str  # label set name (prompts/labels/<name>.yaml)


def repair_text(text: Any) -> str:
    """Undo mis-decoded UTF-8 (mojibake such as 'â€™' for '’'); leaves correct text as it is."""
    if text is None:
        return ""
    return ftfy.fix_encoding(str(text)).strip()


def require_dir(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise DatasetError(f"{path}: {what} not found")
    return path


def require_file(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: {what} not found")
    return path


def find_video(folder: Path | None, stem: str) -> str | None:
    if folder is None:
        return None
    for suffix in VIDEO_SUFFIXES:
        candidate = folder / f"{stem}{suffix}"
        if candidate.is_file():
            return str(candidate)
    return None


def non_empty(name: str, samples: Sequence[Sample], labels: str) -> Split:
    if not samples:
        raise DatasetError(f"split {name!r} is empty")
    ids = [s.id for s in samples]
    if len(set(ids)) != len(ids):
        dupes = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise DatasetError(f"split {name!r} has duplicate sample ids: {dupes}")
    return Split(name=name, samples=tuple(samples), labels=labels)


def context_window(turns: Sequence[Turn], index: int, window: int) -> tuple[Turn, ...]:
    """The `window` turns before `index` (all earlier turns when window < 0)."""
    if window == 0:
        return ()
    start = 0 if window < 0 else max(0, index - window)
    return tuple(turns[start:index])


# -- datasets.Dataset rows -------------------------------------------------------------------
# Rows keep a fixed schema across loaders: nested free-form parts travel as JSON text.

def sample_to_row(sample: Sample) -> dict[str, Any]:
    return {
        "id": sample.id, "transcript": sample.transcript, "speaker": sample.speaker,
        "context": json.dumps([{"speaker": t.speaker, "text": t.text, "emotion": t.emotion} for t in sample.context],
                              ensure_ascii=False),
        "video": sample.video, "start": sample.start, "end": sample.end, "audio": sample.audio,
        "image": sample.image if isinstance(sample.image, str) else None, "physio": sample.physio,
        "vocal_cues": sample.vocal_cues,
        "gold": json.dumps(sample.gold, ensure_ascii=False),
        "metadata": json.dumps(sample.metadata, ensure_ascii=False, default=str),
    }


def row_to_sample(row: dict[str, Any]) -> Sample:
    return Sample(
        id=row["id"], transcript=row.get("transcript"), speaker=row.get("speaker"),
        context=tuple(Turn(**t) for t in json.loads(row.get("context") or "[]")),
        video=row.get("video"), start=row.get("start"), end=row.get("end"), audio=row.get("audio"),
        image=row.get("image"), vocal_cues=row.get("vocal_cues"), physio=row.get("physio"),
        gold=json.loads(row.get("gold") or "{}"), metadata=json.loads(row.get("metadata") or "{}"),
    )


def to_hf_dataset(samples: Iterable[Sample]):
    import datasets

    return datasets.Dataset.from_list([sample_to_row(s) for s in samples])


def from_hf_dataset(dataset) -> list[Sample]:
    return [row_to_sample(row) for row in dataset]
