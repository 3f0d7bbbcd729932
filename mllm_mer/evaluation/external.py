"""Another system's predictions, read from CSV, TSV, JSON or JSONL (pandas) and matched to a dataset's
sample ids. Errors name the file, the column or the row."""
from __future__ import annotations

import hashlib
import json
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

SUFFIXES = (".csv", ".tsv", ".json", ".jsonl")
PROBABILITY_PREFIX = "p_"
_MEDIA_SUFFIX = re.compile(r"(\.[A-Za-z0-9]{1,5})+$")


@dataclass
class Row:
    """One prediction row: its id as the file has it, the predicted value, label probabilities."""

    number: int  # 1-based row number in the file (header not counted)
    id: str
    value: Any
    probabilities: dict[str, float] | None = None


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_table(path: Path) -> list[dict[str, Any]]:
    """The file's rows as mappings (CSV/TSV cells stay text; JSON keeps lists and numbers)."""
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"{path}: predictions must be {', '.join(SUFFIXES)} (or a run directory)")
    try:
        if suffix in (".csv", ".tsv"):
            frame = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", dtype=str, keep_default_na=False)
        elif suffix == ".jsonl":
            frame = pd.read_json(path, lines=True, dtype=False)
        else:
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict):  # {sample id: label}
                data = [{"id": k, "pred": v} for k, v in data.items()]
            if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
                raise ValueError("expected a list of objects or an {id: label} object")
            frame = pd.DataFrame(data)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as error:
        raise ValueError(f"{path}: not a readable predictions file ({str(error).splitlines()[0]})") from None
    if frame.empty:
        raise ValueError(f"{path}: no prediction rows")
    return frame.to_dict("records")


def id_of(row: dict[str, Any], id_col: str) -> str:
    """The row's id: one column, or a template over columns (`dia{Dialogue_ID}_utt{Utterance_ID}`)."""
    if "{" not in id_col:
        return _text(row[id_col])
    return id_col.format_map({k: _text(v) for k, v in row.items()})


def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def template_columns(id_col: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(id_col) if name] if "{" in id_col else [id_col]


def probabilities_of(row: dict[str, Any], prob_cols: list[str], prob_col: str | None, where: str
                     ) -> dict[str, float] | None:
    """label (as the file names it) -> probability, from `p_<label>` columns or a JSON mapping column."""
    if prob_col:
        cell = row.get(prob_col)
        try:
            given = json.loads(cell) if isinstance(cell, str) else cell
            values = {str(k): float(v) for k, v in (given or {}).items()}
        except (ValueError, TypeError, AttributeError):
            raise ValueError(f"{where}: column {prob_col!r} is not a JSON mapping of label -> probability") from None
    else:
        try:
            values = {c[len(PROBABILITY_PREFIX):]: float(row[c]) for c in prob_cols if str(row[c]).strip() != ""}
        except ValueError:
            raise ValueError(f"{where}: a {PROBABILITY_PREFIX}<label> column holds a value that is not a number") \
                from None
    return values or None


def read_rows(path: Path, id_col: str, pred_col: str, prob_col: str | None = None) -> list[Row]:
    """Every prediction row with its id, value and probabilities; a missing column is an error."""
    rows = read_table(path)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    for flag, names in (("--pred-id-col", template_columns(id_col)), ("--pred-col", [pred_col]),
                        ("--prob-col", [prob_col] if prob_col else [])):
        missing = [n for n in names if n not in columns]
        if missing:
            raise ValueError(f"{path}: no column {', '.join(map(repr, missing))} for {flag} "
                             f"(columns: {', '.join(map(str, columns))})")
    prob_cols = [c for c in columns if str(c).startswith(PROBABILITY_PREFIX)] if not prob_col else []
    found, seen = [], {}
    for number, row in enumerate(rows, 1):
        where = f"{path}: row {number}"
        key = id_of(row, id_col)
        if key in seen:
            raise ValueError(f"{path}: id {key!r} appears in rows {seen[key]} and {number}; ids must be unique")
        seen[key] = number
        value = row.get(pred_col)
        found.append(Row(number, key, None if value is None or (isinstance(value, float) and value != value)
                         else value, probabilities_of(row, prob_cols, prob_col, where)))
    return found


def match_ids(rows: list[Row], sample_ids: list[str]) -> tuple[dict[str, Row], list[str]]:
    """(sample id -> its row, ids that match no sample): an id matches exactly, or as a media file name
    (`dia233_utt4.mp4` or `clips/dia233_utt4.mp4` is sample `dia233_utt4`)."""
    known = set(sample_ids)
    matched: dict[str, Row] = {}
    unmatched = []
    for row in rows:
        key = row.id if row.id in known else _MEDIA_SUFFIX.sub("", Path(row.id.replace("\\", "/")).name)
        if key in known and key not in matched:
            matched[key] = row
        else:
            unmatched.append(row.id)
    return matched, unmatched
