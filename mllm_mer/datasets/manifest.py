"""Any CSV or JSONL manifest, with the columns named by the caller."""
from __future__ import annotations

import csv
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from mllm_mer.datasets.base import DatasetError, Split, context_window, non_empty, repair_text
from mllm_mer.types import Sample, Turn


@dataclass(frozen=True)
class Columns:
    id: str = "id"
    text: str = "text"
    label: str = "label"
    video: str = "video"
    audio: str = "audio"
    speaker: str = "speaker"
    dialogue: str = "dialogue"
    rationale: str = "rationale"  # optional: a reference rationale (training targets)
    split: str = "split"  # optional: rows whose split differs from the one asked are left out


def _rows(path: Path) -> list[dict]:
    if path.suffix.lower() == ".jsonl":
        rows = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise DatasetError(f"{path}:{number}: not a JSON line ({error})") from None
        return rows
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def load(path: str | Path, split: str | None = None, labels: str = "meld", task: str = "emotion",
         columns: Columns = Columns(), context: int = 5) -> Split:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: manifest not found")
    rows = _rows(path)
    if rows and columns.id not in rows[0]:
        raise DatasetError(f"{path}: no id column {columns.id!r} (columns: {', '.join(rows[0])})")
    base = path.parent
    resolve = lambda v: str(base / v) if v and not Path(v).is_absolute() else (v or None)  # noqa: E731
    dialogues: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        if row.get(columns.dialogue) not in (None, ""):
            dialogues[str(row[columns.dialogue])].append(i)
    turns_of = {}
    for _dia, indices in dialogues.items():
        turns = [Turn(speaker=str(rows[i].get(columns.speaker) or ""), text=repair_text(rows[i].get(columns.text)))
                 for i in indices]
        for position, i in enumerate(indices):
            turns_of[i] = context_window(turns, position, context)
    samples = []
    for i, row in enumerate(rows):
        if split and row.get(columns.split) not in (None, "", split):
            continue
        gold = {task: str(row[columns.label]).strip().lower()} if row.get(columns.label) not in (None, "") else {}
        meta = {k: v for k, v in row.items() if k not in {columns.id, columns.text, columns.label, columns.video,
                                                            columns.audio, columns.speaker}}
        samples.append(Sample(id=str(row[columns.id]), transcript=repair_text(row.get(columns.text)) or None,
                              speaker=row.get(columns.speaker) or None, context=turns_of.get(i, ()),
                              video=resolve(row.get(columns.video)), audio=resolve(row.get(columns.audio)),
                              gold=gold, metadata=meta))
    return non_empty(f"{path.name}" + (f"/{split}" if split else ""), samples, labels=labels)
