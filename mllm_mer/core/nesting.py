"""How deeply a JSON or JSON-lines file nests, found before any parser sees it.

Some readers crash the whole process on deep nesting (pyarrow's JSON reader segfaults near 9,000
levels; the stdlib stops at the recursion limit with no file named), so untrusted files are scanned
first: a cheap streaming pass over the brackets, strings left out, that names the file and line.
"""
from __future__ import annotations

import re
from itertools import accumulate
from pathlib import Path

MAX_DEPTH = 100  # far above any manifest, dialogue or context file; far below where readers crash
_STRING = re.compile(rb'"(?:[^"\\\n]|\\.)*"')  # a JSON string never spans a line
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")


class TooDeep(ValueError):
    """A file nested past the limit; the message names the file and line."""


def _depths(block: bytes, start: int) -> tuple[int, int]:
    """(deepest level within `block`, level at its end) given the level at its start."""
    brackets = _STRING.sub(b"", block).translate(None, _NOT_BRACKET).translate(_STEP)
    if not brackets:
        return start, start
    levels = list(accumulate((1 if b == 1 else -1 for b in brackets), initial=start))
    return max(levels), levels[-1]


def check_depth(path: str | Path, limit: int = MAX_DEPTH, block_size: int = 1 << 20) -> None:
    """Raise TooDeep, naming the file and line, where brackets outside strings nest past `limit`."""
    level, line, tail = 0, 1, b""
    with open(path, "rb") as f:
        while True:
            data = f.read(block_size)
            head, newline, rest = (tail + data).rpartition(b"\n")
            block, tail = (head + newline, rest) if data else (tail, b"")
            if _depths(block, level)[0] > limit:
                _raise_at(path, block, level, line, limit)
            level, line = _depths(block, level)[1], line + block.count(b"\n")
            if not data:
                return


def check_text_depth(text: str | bytes, where: str, limit: int = MAX_DEPTH) -> None:
    """The same check on text already in memory (`where` names its source in the error)."""
    data = text.encode("utf-8", "replace") if isinstance(text, str) else text
    if _depths(data, 0)[0] > limit:
        _raise_at(where, data, 0, 1, limit)


def _raise_at(path, block: bytes, level: int, line: int, limit: int) -> None:
    for number, text in enumerate(block.split(b"\n"), line):
        deepest, level = _depths(text, level)
        if deepest > limit:
            raise TooDeep(f"{path}:{number}: nested more than {limit} levels deep (refused before parsing)")


__all__ = ["MAX_DEPTH", "TooDeep", "check_depth", "check_text_depth"]
