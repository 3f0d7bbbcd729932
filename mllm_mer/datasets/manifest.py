"""Any corpus as released: a table (any format `datasets.tables` reads) with the columns named by the
caller, or a file of dialogue records with lists of turns."""
from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mllm_mer.core.types import Sample, Turn
from mllm_mer.datasets.base import DatasetError, Split, context_window, non_empty, repair_text
from mllm_mer.datasets.tables import UNREADABLE_ROW, RaggedRow, TableFormat, read_table, rows


@dataclass(frozen=True)
class Columns:
    id: str = "id"
    text: str = "text"  # "": no transcript (image-only or audio-only data)
    label: str = "label"  # "": no gold labels
    video: str = "video"
    audio: str = "audio"
    image: str = "image"
    physio: str = "physio"  # a physiological signal file (media.physio)
    start: str = "start"  # optional: the row's window (seconds) in its recordings
    end: str = "end"
    speaker: str = "speaker"
    dialogue: str = "dialogue"
    order: str = ""  # utterance order within a dialogue, when the rows are not in order
    rationale: str = "rationale"  # optional: a reference rationale (training targets)
    split: str = "split"  # optional: rows whose split differs from the one asked are left out


@dataclass(frozen=True)
class Turns:
    """Dialogue records with a list of utterances in `field` (the common ERC release shape)."""

    field: str = ""  # "": each row is one utterance
    text: str = "utterance"
    speaker: str = "speaker"
    label: str = "emotion"


def _key(row: dict, names: tuple[str, ...]) -> str:
    """A key from one column or several (`dialogue,utterance` -> 'd1/u3')."""
    return "/".join(str(row.get(n, "") if row.get(n) is not None else "").strip() for n in names)


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
    """The manifest's own loader keywords from a verb's DataConfig (columns, format, turns, label set, task)."""
    columns = Columns(id=data.id_col, text=data.text_col, label=data.label_col, video=data.video_col,
                      audio=data.audio_col, image=data.image_col, physio=data.physio_col, speaker=data.speaker_col,
                      dialogue=data.dialogue_col, order=data.order_col or "")
    fmt = TableFormat(delimiter=data.delimiter.encode().decode("unicode_escape") if data.delimiter else None,
                      header=data.header, columns=_names(data.columns or ""))
    return {"columns": columns, "fmt": fmt, "labels": labels or "meld", "task": data.task,
            "turns": Turns(field=data.turns_field or "", text=data.turn_text, speaker=data.turn_speaker,
                           label=data.turn_label),
            "media_root": data.media_root, "label_ids": data.label_ids}


def flatten_turns(table, turns: Turns, columns: Columns) -> tuple[list[dict[str, Any]], Columns]:
    """One row per turn, in dialogue and turn order, keyed `DIALOGUE/TURN` (the record's dialogue column,
    else its position); a record's other fields go with each of its turns."""
    flat = []
    for number, record in enumerate(rows(table)):
        listed = record.get(turns.field)
        if not isinstance(listed, list):
            raise DatasetError(f"record {number + 1} has no list of turns in {turns.field!r} "
                               f"(fields: {', '.join(record)})")
        dialogue = _key(record, _names(columns.dialogue)) if columns.dialogue in record else str(number)
        shared = {k: v for k, v in record.items() if k != turns.field and not isinstance(v, (list, dict))}
        for position, turn in enumerate(listed):
            turn = turn if isinstance(turn, dict) else {turns.text: turn}
            own = {k: v for k, v in turn.items() if not isinstance(v, (list, dict))
                   and k not in (turns.text, turns.speaker, turns.label)}
            flat.append({**shared, **own,
                         "id": f"{dialogue}/{position}", "dialogue": dialogue, "text": turn.get(turns.text),
                         "speaker": turn.get(turns.speaker), "label": turn.get(turns.label)})
    named = replace(columns, id="id", dialogue="dialogue", text="text", speaker="speaker",
                    label="label" if columns.label else "", order="")
    return flat, named


def _column(source, name: str) -> list[Any]:
    """One column as Python values (Arrow converts a whole column at once; per-cell access is slow)."""
    return [r.get(name) for r in source] if isinstance(source, list) else source.data.column(name).to_pylist()


def _check_columns(path, present: set[str], columns: Columns, split: str | None) -> None:
    for what, names in (("id", _names(columns.id)), ("text", _names(columns.text))):
        missing = [n for n in names if n not in present]
        if missing:
            raise DatasetError(f"{path}: no {what} column {', '.join(map(repr, missing))} "
                               f"(columns: {', '.join(sorted(present))})"
                               + ("; pass --text-col '' for data without text" if what == "text" else ""))
    if columns.label and columns.label not in present:
        raise DatasetError(f"{path}: no label column {columns.label!r} (columns: {', '.join(sorted(present))}); "
                           "name it with --label-col, or pass --label-col '' for a manifest without labels")
    if split and columns.split not in present:
        raise DatasetError(f"{path}: --split {split!r} given, but the manifest has no {columns.split!r} column; "
                           "leave --split out to use every row")


def unique_ids(path, source, id_cols: tuple[str, ...]) -> list[str]:
    keys = ["/".join(str(v if v is not None else "").strip() for v in values)
            for values in zip(*(_column(source, n) for n in id_cols), strict=True)]
    seen: dict[str, int] = {}
    for number, key in enumerate(keys, 1):
        if not key.strip("/"):
            raise DatasetError(f"{path}: row {number} has an empty id ({', '.join(id_cols)})")
        if key in seen:
            raise DatasetError(f"{path}: id {key!r} appears in rows {seen[key]} and {number}; ids must be unique "
                               "(build them from several columns, e.g. --id-col dialogue,utterance)")
        seen[key] = number
    return keys


def dialogue_order(source, columns: Columns, present: set[str]) -> dict[str, list[int]]:
    """Dialogue key -> its rows in utterance order (the order column's, else the file's)."""
    names = _names(columns.dialogue)
    dialogues: dict[str, list[int]] = defaultdict(list)
    if not names or not all(n in present for n in names):
        return dialogues
    cells = list(zip(*(_column(source, n) for n in names), strict=True))
    for i, values in enumerate(cells):
        if all(v not in (None, "") for v in values):
            dialogues["/".join(str(v).strip() for v in values)].append(i)
    if columns.order and columns.order in present:
        order = _column(source, columns.order)
        for indices in dialogues.values():
            indices.sort(key=lambda i: _number(order[i]))
    return dialogues


def _number(value: Any) -> tuple[int, float | str]:
    try:
        return 0, float(value)
    except (TypeError, ValueError):
        return 1, str(value)


def contexts(source, dialogues: dict[str, list[int]], columns: Columns, window: int,
             wanted: set[int]) -> dict[int, tuple[Turn, ...]]:
    """The earlier turns of each wanted row, within its dialogue."""
    texts = _column(source, columns.text) if columns.text else None
    speakers = _column(source, columns.speaker) if columns.speaker and _has(source, columns.speaker) else None
    found = {}
    for indices in dialogues.values():
        if not wanted.intersection(indices):
            continue
        turns = [Turn(speaker=(_speaker(speakers[i]) if speakers else None) or "",
                      text=repair_text(texts[i]) if texts else "") for i in indices]
        for position, i in enumerate(indices):
            if i in wanted:
                found[i] = context_window(turns, position, window)
    return found


def _has(source, name: str) -> bool:
    return any(name in r for r in source[:1]) if isinstance(source, list) else name in source.column_names


def load(path: str | Path, split: str | None = None, labels: str = "meld", task: str = "emotion",
         columns: Columns = Columns(), context: int = 5, media_root: str | None = None,
         fmt: TableFormat | None = None, turns: Turns = Turns(), label_ids: bool = False,
         limit: int | None = None) -> Split:
    """Samples from a manifest. `columns.id` and `columns.dialogue` may name several columns (comma-
    separated) whose values together make the key. Relative media paths resolve in `media_root`
    (default: the manifest's folder). `limit`: only the first rows become samples (big files)."""
    where = Path(path)
    picked = where.is_dir() or not where.exists()  # an Arrow folder or hub dataset: the split is picked there
    ragged: list[RaggedRow] = []
    table = read_table(path, fmt or TableFormat(), split if picked else None, ragged)
    split = None if picked else split
    source, columns = flatten_turns(table, turns, columns) if turns.field else (table, columns)
    present = set(source[0]) if isinstance(source, list) and source else set(getattr(source, "column_names", []))
    if not len(source):
        raise DatasetError(f"{where}: no rows")
    _check_columns(where, present, columns, split)
    ids = unique_ids(where, source, _names(columns.id))
    dialogues = dialogue_order(source, columns, present)
    order = [i for indices in dialogues.values() for i in indices] if columns.order in present and dialogues \
        else range(len(ids))
    splits = _column(source, columns.split) if split else None
    chosen = [i for i in order if not splits or splits[i] in (None, "", split)][:limit]
    base = Path(media_root) if media_root else (where.parent if where.is_file() else Path.cwd())
    turns_of = contexts(source, dialogues, columns, context, set(chosen))
    gold_of = gold_reader(labels, task, label_ids)
    dialogue_of = {i: key for key, indices in dialogues.items() for i in indices}
    picked = [source[i] for i in chosen] if isinstance(source, list) else rows(source.select(chosen))
    samples = [_sample(row, ids[i], columns, turns_of.get(i, ()), base, (task, gold_of), dialogue_of.get(i))
               for i, row in zip(chosen, picked, strict=True)]
    # A ragged row fails alone (named by its line); every other row is answered.
    samples += [Sample(id=f"{where.name}:{r.line}", metadata={UNREADABLE_ROW: r.message})
                for r in ragged if limit is None or r.index < limit]
    return non_empty(f"{where.name}" + (f"/{split}" if split else ""), samples, labels=labels)


def gold_reader(labels: str, task: str, label_ids: bool):
    """Cell -> gold label text; with `label_ids`, 0-based indices into the task's labels ('3,7' -> two)."""
    names: tuple[str, ...] = ()
    if label_ids:
        from mllm_mer.core.labels import load_label_scheme

        names = tuple(load_label_scheme(labels).task(task).labels)

    def read(value: Any) -> str:
        text = str(value).strip().lower()
        if not names:
            return text
        parts = [p.strip() for p in text.split(",") if p.strip()]
        return ",".join(names[int(p)] if p.isdigit() and int(p) < len(names) else p for p in parts)
    return read


def _sample(row: dict[str, Any], key: str, columns: Columns, context: tuple[Turn, ...], base: Path,
            gold: tuple, dialogue: str | None) -> Sample:
    def media(name: str) -> str | None:
        value = row.get(name) if name else None
        if value in (None, ""):
            return None
        return str(base / str(value)) if not Path(str(value)).is_absolute() else str(value)

    task, gold_of = gold
    label = row.get(columns.label) if columns.label else None
    used = {*_names(columns.id), columns.text, columns.label, columns.video, columns.audio, columns.image,
            columns.speaker, columns.physio, columns.start, columns.end}
    return Sample(id=key, transcript=(repair_text(row.get(columns.text)) or None) if columns.text else None,
                  speaker=_speaker(row.get(columns.speaker)), context=context, video=media(columns.video),
                  audio=media(columns.audio), image=media(columns.image), physio=media(columns.physio),
                  start=_seconds(row.get(columns.start)), end=_seconds(row.get(columns.end)),
                  gold={task: gold_of(label)} if label not in (None, "") else {},
                  metadata={**({"dialogue": dialogue} if dialogue is not None else {}),
                            **{k: v for k, v in row.items() if k not in used}})


def _seconds(value: Any) -> Any:
    """A window bound cell as seconds; an empty cell is none, and a cell that is no number stays as it is, so
    that the sample fails alone (media.decode.check_times) instead of the whole manifest."""
    if value in (None, ""):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return value
