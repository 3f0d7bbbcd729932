"""Any table as released, read by Hugging Face `datasets`: CSV/TSV with any delimiter (with or
without a header), JSON arrays, JSON lines, Parquet, Arrow files, `save_to_disk` folders, and a
hub id when online.

Rows come out as an Arrow-backed `datasets.Dataset` (memory-mapped, not Python objects), so a
200k-row file costs what the rows a run takes cost. Cells are strings where the format has no
types (CSV); an encoding problem is one line naming the file and the line.
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mllm_mer.datasets.base import DatasetError

# Sample metadata key of a row that could not be read: the sample fails with this message, alone.
UNREADABLE_ROW = "unreadable_row"
MAX_CELL = 64 * 1024 * 1024  # characters in one CSV cell: a long transcript fits, a runaway quote is an error
SUFFIXES = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet",
            ".arrow": "arrow"}


@dataclass(frozen=True)
class TableFormat:
    """How to read a delimited file: the delimiter (None: by suffix), whether it has a header, and the
    column names of a headerless one."""

    delimiter: str | None = None
    header: bool = True
    columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class RaggedRow:
    """A delimited row whose field count differs from the header's: `index` is its place among the data rows."""

    index: int
    line: int
    message: str  # FILE:LINE: what is wrong


def read_table(source: str | Path, fmt: TableFormat = TableFormat(), split: str | None = None,
               ragged: list[RaggedRow] | None = None):
    """The rows of a file, an Arrow folder or a hub dataset, as a `datasets.Dataset`.

    A delimited file where half the rows or more disagree with its header (a wrong delimiter) is refused. A few
    ragged rows (a delimiter inside unquoted text, as released corpora have) are left out of the table
    and appended to `ragged`, for the caller to fail them one by one; without `ragged`, refused.
    """

    path = Path(source)
    try:
        return _read(path, source, fmt, split, ragged)
    except RecursionError:
        raise DatasetError(f"{path}: nested too deeply to read as a table") from None


def _read(path: Path, source: str | Path, fmt: TableFormat, split: str | None, ragged: list[RaggedRow] | None):
    import datasets

    with _quiet():
        if path.is_dir():
            return _from_disk(path, split)
        if not path.is_file():
            if str(source).count("/") == 1 and not str(source).startswith((".", "/")):
                return _from_hub(str(source), split)
            raise DatasetError(f"{path}: manifest not found")
        builder = SUFFIXES.get(path.suffix.lower(), "csv")
        if builder == "csv":
            return _csv(path, fmt, ragged)
        if builder == "json":
            _check_utf8(path)
            _check_nesting(path)  # pyarrow's reader would crash the process on deep nesting
        try:
            return datasets.load_dataset(builder, data_files=str(path), split="train")
        except (ValueError, TypeError, OSError, datasets.exceptions.DatasetGenerationError) as error:
            if builder == "json":
                _json_lines_problem(path)  # the line at fault, where there is one
            raise DatasetError(f"{path}: not readable as {builder} ({_cause(error)})") from None


def _check_nesting(path: Path) -> None:
    from mllm_mer.core.nesting import TooDeep, check_depth

    try:
        check_depth(path)
    except TooDeep as error:
        raise DatasetError(str(error)) from None


def _json_lines_problem(path: Path) -> None:
    import json

    with open(path, encoding="utf-8-sig") as f:
        head = f.read(1).lstrip()
        f.seek(0)
        if head == "[":
            return
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise DatasetError(f"{path}:{number}: not a JSON line ({error})") from None
            if not isinstance(row, dict):
                raise DatasetError(f"{path}:{number}: expected a JSON object per line")


def _csv(path: Path, fmt: TableFormat, ragged: list[RaggedRow] | None = None):
    import datasets

    delimiter = fmt.delimiter or ("\t" if path.suffix.lower() == ".tsv" else ",")
    if not fmt.header and not fmt.columns:
        raise DatasetError(f"{path}: --no-header needs --columns naming every column (e.g. text,labels,id)")
    names, count, bad = _scan(path, delimiter, fmt)
    if bad and (ragged is None or 2 * len(bad) >= count):  # half the rows or more: the delimiter, not a row
        raise DatasetError(bad[0].message + (f" ({len(bad)} of {count} rows; is --delimiter right?)"
                                             if len(bad) > 1 else ""))
    if bad:
        ragged.extend(bad)
        return _rows_but(path, delimiter, fmt, names, {r.index for r in bad})
    if not count:  # a header alone
        return datasets.Dataset.from_dict({n: [] for n in names},
                                          features=datasets.Features({n: datasets.Value("string") for n in names}))
    # Every cell a string, as written: a typed guess would turn id 007 into 7.
    options: dict[str, Any] = {"sep": delimiter, "keep_default_na": False, "encoding": "utf-8-sig", "index_col": False,
                               "features": datasets.Features({n: datasets.Value("string") for n in names})}
    if not fmt.header:
        options.update(header=None, column_names=names)
    try:
        table = datasets.load_dataset("csv", data_files=str(path), split="train", **options)
    except (ValueError, TypeError, OSError, datasets.exceptions.DatasetGenerationError) as error:
        raise DatasetError(f"{path}: not readable as a table with delimiter {delimiter!r} ({_cause(error)})") \
            from None
    if fmt.header and fmt.columns:  # names for a header the file has: renamed in order
        if len(fmt.columns) != len(table.column_names):
            raise DatasetError(f"{path}: --columns names {len(fmt.columns)} columns; the file has "
                               f"{len(table.column_names)}")
        table = table.rename_columns(dict(zip(table.column_names, fmt.columns, strict=True)))
    return table


def _scan(path: Path, delimiter: str, fmt: TableFormat) -> tuple[list[str], int, list[RaggedRow]]:
    """(column names, data rows, ragged rows) in one pass that also checks what pandas would let through
    silently: text that is not UTF-8, a header naming a column twice, a ragged row (each naming its line)."""
    import csv

    csv.field_size_limit(max(csv.field_size_limit(), MAX_CELL))  # the default 128 KiB refuses long transcripts
    bad: list[RaggedRow] = []
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f, delimiter=delimiter)
            names = list(fmt.columns) if not fmt.header else next(reader, None)
            if not names:
                raise DatasetError(f"{path}: no rows")
            if fmt.header and len(set(names)) != len(names):
                raise DatasetError(f"{path}: the header names a column twice ({', '.join(names)})")
            count = 0
            for row in reader:
                if row and len(row) != len(names):
                    named = "header" if fmt.header else "--columns"
                    bad.append(RaggedRow(count, reader.line_num, f"{path}:{reader.line_num}: {len(row)} fields "
                                                                 f"where the {named} names {len(names)}"))
                count += bool(row)
    except UnicodeDecodeError:
        _check_utf8(path)  # finds the line
        raise
    except csv.Error as error:
        raise DatasetError(f"{path}:{reader.line_num}: not a readable table row ({error})") from None
    return names, count, bad


def _rows_but(path: Path, delimiter: str, fmt: TableFormat, names: list[str], skip: set[int]):
    """The file's data rows but those in `skip`, every cell a string, read by the parser that counted them."""
    import csv

    import datasets

    columns: dict[str, list[str]] = {n: [] for n in names}
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter=delimiter)
        if fmt.header:
            next(reader)
        for index, row in enumerate(r for r in reader if r):
            if index not in skip:
                for name, value in zip(names, row, strict=True):
                    columns[name].append(value)
    table = datasets.Dataset.from_dict(columns, features=datasets.Features({n: datasets.Value("string")
                                                                            for n in names}))
    if fmt.header and fmt.columns:
        if len(fmt.columns) != len(names):
            raise DatasetError(f"{path}: --columns names {len(fmt.columns)} columns; the file has {len(names)}")
        table = table.rename_columns(dict(zip(names, fmt.columns, strict=True)))
    return table


def _from_disk(path: Path, split: str | None):
    import datasets

    try:
        table = datasets.load_from_disk(str(path))
    except FileNotFoundError:
        raise DatasetError(f"{path}: a folder, but not one written by save_to_disk (no dataset_info.json)") \
            from None
    if isinstance(table, datasets.DatasetDict):
        return _pick(table, split, path)
    return table


def _from_hub(name: str, split: str | None):
    import datasets

    try:
        found = datasets.load_dataset(name)
    except Exception as error:  # the hub's errors are many and unrelated; say it in one line
        raise DatasetError(f"{name}: not a file here, and the hub dataset cannot be loaded ({_cause(error)})") \
            from None
    return _pick(found, split, name)


def _pick(splits, split: str | None, where: Any):
    if split in splits:
        return splits[split]
    if split is None and len(splits) == 1:
        return next(iter(splits.values()))
    raise DatasetError(f"{where}: splits {', '.join(splits)}; choose one with --split")


def _check_utf8(path: Path, chunk: int = 1 << 20) -> None:
    """Not UTF-8: the one-line error with its line number (pandas would say only a byte offset)."""
    import codecs

    decoder, line = codecs.getincrementaldecoder("utf-8")(), 1
    with open(path, "rb") as f:
        while block := f.read(chunk):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as error:
                line += block[:error.start].count(b"\n")
                raise DatasetError(f"{path}:{line}: not UTF-8 text (save the manifest as UTF-8)") from None
            line += block.count(b"\n")


def _cause(error: Exception) -> str:
    cause = error.__cause__ or error.__context__ or error
    return (str(cause).strip().splitlines() or [type(cause).__name__])[0][:200]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No progress bars or cache chatter from `datasets` for a local file."""
    import datasets

    was = datasets.utils.logging.is_progress_bar_enabled()
    datasets.utils.logging.disable_progress_bar()
    level = logging.getLogger("datasets").level
    logging.getLogger("datasets").setLevel(logging.CRITICAL)  # a bad file is our one-line error, not its log
    try:
        yield
    finally:
        logging.getLogger("datasets").setLevel(level)
        if was:
            datasets.utils.logging.enable_progress_bar()


def rows(table, start: int = 0, stop: int | None = None, batch: int = 1000) -> Iterator[dict[str, Any]]:
    """Rows as dicts, read in batches (Arrow to Python a batch at a time, never the whole table)."""
    stop = len(table) if stop is None else min(stop, len(table))
    for first in range(start, stop, batch):
        part = table[first:min(first + batch, stop)]
        names = list(part)
        for values in zip(*(part[n] for n in names), strict=True):
            yield dict(zip(names, values, strict=True))
