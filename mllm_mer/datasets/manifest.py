"""Any CSV or JSONL manifest, with the columns named by the caller."""
from __future__ import annotations

import ast
import csv
import io
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from mllm_mer.core.types import Sample, Turn
from mllm_mer.datasets.base import DatasetError, Split, context_window, non_empty, repair_text


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
    """The manifest's rows; a line that is not UTF-8 or not JSON is an error naming file and line."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise DatasetError(f"{path}:{line}: not UTF-8 text (save the manifest as UTF-8)") from None
    if path.suffix.lower() == ".jsonl":
        rows = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as error:
                    raise DatasetError(f"{path}:{number}: not a JSON line ({error})") from None
                if not isinstance(row, dict):
                    raise DatasetError(f"{path}:{number}: expected a JSON object per line")
                rows.append(row)
        return rows
    return list(csv.DictReader(io.StringIO(text, newline="")))


def _key(row: dict, names: tuple[str, ...]) -> str:
    """A key from one column or several (`dialogue,utterance` -> 'd1/u3')."""
    return "/".join(str(row.get(n, "")).strip() for n in names)


def _speaker(value) -> str | None:
    """Speaker cells written as list literals (`['Ross']`, as some releases do) become the name."""
    if value in (None, ""):
        return None
    if isinstance(value, list):
        return ", ".join(map(str, value)) or None
    text = str(value).strip()
    if text.startswith("[") and text.endswith("]"):
        try:
            names = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text
        if isinstance(names, (list, tuple)):
            return ", ".join(map(str, names)) or None
    return text


def _names(column: str) -> tuple[str, ...]:
    return tuple(c.strip() for c in column.split(",") if c.strip())


def config_options(data, labels: str | None) -> dict:
    """The manifest's own loader keywords from a verb's DataConfig (column names, label set, task)."""
    return {"columns": Columns(id=data.id_col, text=data.text_col, label=data.label_col, video=data.video_col,
                               speaker=data.speaker_col, dialogue=data.dialogue_col),
            "labels": labels or "meld", "task": data.task}


def load(path: str | Path, split: str | None = None, labels: str = "meld", task: str = "emotion",
         columns: Columns = Columns(), context: int = 5, media_root: str | None = None) -> Split:
    """Samples from a CSV/JSONL manifest. `columns.id` and `columns.dialogue` may name several
    columns (comma-separated) whose values together make the key. Relative media paths resolve
    in `media_root` (default: the manifest's folder)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: manifest not found")
    rows = _rows(path)
    if not rows:
        raise DatasetError(f"{path}: no rows")
    present = set().union(*(r.keys() for r in rows))
    id_cols, dialogue_cols = _names(columns.id), _names(columns.dialogue)
    for what, names in (("id", id_cols), ("text", (columns.text,))):
        missing = [n for n in names if n not in present]
        if missing:
            raise DatasetError(f"{path}: no {what} column {', '.join(map(repr, missing))} "
                               f"(columns: {', '.join(sorted(present))})")
    if columns.label and columns.label not in present:
        raise DatasetError(f"{path}: no label column {columns.label!r} (columns: {', '.join(sorted(present))}); "
                           "name it with --label-col, or pass --label-col '' for a manifest without labels")
    if split and columns.split not in present:
        raise DatasetError(f"{path}: --split {split!r} given, but the manifest has no {columns.split!r} column; "
                           "leave --split out to use every row")
    ids = [_key(r, id_cols) for r in rows]
    seen: dict[str, int] = {}
    for number, key in enumerate(ids, 1):
        if key in seen:
            raise DatasetError(f"{path}: id {key!r} appears in rows {seen[key]} and {number}; ids must be unique "
                               "(build them from several columns, e.g. --id-col dialogue,utterance)")
        seen[key] = number
    base = Path(media_root) if media_root else path.parent
    resolve = lambda v: str(base / v) if v and not Path(v).is_absolute() else (v or None)  # noqa: E731
    dialogues: dict[str, list[int]] = defaultdict(list)
    if all(n in present for n in dialogue_cols):
        for i, row in enumerate(rows):
            if all(row.get(n) not in (None, "") for n in dialogue_cols):
                dialogues[_key(row, dialogue_cols)].append(i)
    turns_of = {}
    for indices in dialogues.values():
        turns = [Turn(speaker=_speaker(rows[i].get(columns.speaker)) or "", text=repair_text(rows[i].get(columns.text)))
                 for i in indices]
        for position, i in enumerate(indices):
            turns_of[i] = context_window(turns, position, context)
    samples = []
    for i, row in enumerate(rows):
        if split and row.get(columns.split) not in (None, "", split):
            continue
        gold = ({task: str(row[columns.label]).strip().lower()}
                if columns.label and row.get(columns.label) not in (None, "") else {})
        meta = {k: v for k, v in row.items() if k not in {*id_cols, columns.text, columns.label, columns.video,
                                                            columns.audio, columns.speaker}}
        samples.append(Sample(id=ids[i], transcript=repair_text(row.get(columns.text)) or None,
                              speaker=_speaker(row.get(columns.speaker)), context=turns_of.get(i, ()),
                              video=resolve(row.get(columns.video)), audio=resolve(row.get(columns.audio)),
                              gold=gold, metadata=meta))
    return non_empty(f"{path.name}" + (f"/{split}" if split else ""), samples, labels=labels)
