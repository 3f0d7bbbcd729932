"""Each config section checks its own values as it is made: types, ranges, choices, finite numbers.

The check lives in the section (`Section.__post_init__`), not in the parser, so the command line,
YAML files, `key=value` overrides, the app and Python callers all get the same one-line error,
named as the user types the option (`--temperature must be a finite number, not nan`).
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Literal

from mllm_mer.core.yaml_file import ConfigError

__all__ = ["OptionError", "Section", "check_value", "choices_of", "flag_name", "section_hints", "unwrap"]

_HINTS: dict[type, dict[str, Any]] = {}


class OptionError(ConfigError):
    """A value one option cannot take: `name` is the option as typed, `problem` what is wrong."""

    def __init__(self, name: str, problem: str):
        super().__init__(f"{name} {problem}")
        self.name, self.problem = name, problem

    def renamed(self, name: str) -> OptionError:
        return OptionError(name, self.problem)


def flag_name(leaf: dataclasses.Field, flat: str | None = None) -> str:
    """The option as a user types it: `--max-frames`, or `WHAT` for a positional argument."""
    name = flat or leaf.name
    return name.upper() if leaf.metadata.get("positional") else f"--{name.replace('_', '-')}"


def section_hints(cls: type) -> dict[str, Any]:
    """The resolved field types of a section (cached: sections are made often)."""
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def unwrap(hint: Any) -> tuple[Any, bool]:
    """(the type without None, whether None is allowed)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return (args[0] if len(args) == 1 else hint), len(args) < len(typing.get_args(hint))
    return hint, False


def choices_of(hint: Any, leaf: dataclasses.Field) -> tuple[Any, ...]:
    """The values a field takes: its `Literal[...]`, or the registry names in its metadata; () if any."""
    base, _ = unwrap(hint)
    if typing.get_origin(base) is Literal:
        return typing.get_args(base)
    return tuple(leaf.metadata.get("choices") or ())


def check_value(leaf: dataclasses.Field, hint: Any, value: Any, name: str | None = None) -> Any:
    """The value checked against the field's type, choices and range; numbers given as text (YAML's
    `1e-4`, an override's `nan`) are read as numbers first, so that every path reports the same."""
    name = name or flag_name(leaf)
    base, optional = unwrap(hint)
    allowed = choices_of(hint, leaf)
    if value is None:
        if optional or not (allowed or base in (int, float)):
            return None
        raise OptionError(name, "needs a value")
    if allowed:
        if value not in allowed:
            raise OptionError(name, f"must be one of {', '.join(map(str, allowed))}, not {value!r}")
        return value
    if base is dict or typing.get_origin(base) is dict:
        value = _mapping(name, value) if isinstance(value, str) else value
        try:
            bad = _holds_non_finite(value)
        except RecursionError:
            raise OptionError(name, "is nested too deeply to read") from None
        if bad:  # run.json and engines take JSON, which has no NaN
            raise OptionError(name, "holds NaN or infinity, which no option takes")
        return value
    if base is int:
        value = _whole(name, value)
    elif base is float:
        value = _real(name, value, leaf.metadata.get("finite", True))
    else:
        return value
    _in_range(name, value, leaf.metadata.get("low"), leaf.metadata.get("high"))
    return value


def _mapping(name: str, text: str) -> dict:
    """A mapping given as YAML/JSON text (a flag's value)."""
    import yaml

    try:
        value = yaml.safe_load(text)
    except RecursionError:
        raise OptionError(name, "is nested too deeply to read") from None
    except yaml.YAMLError as error:
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise OptionError(name, f"must be a YAML/JSON mapping ({problem})") from None
    if not isinstance(value, dict):
        raise OptionError(name, f"must be a YAML/JSON mapping, not {text!r}")
    return value


def _holds_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_holds_non_finite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_holds_non_finite(v) for v in value)
    return False


def _whole(name: str, value: Any) -> int:
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    elif isinstance(value, int) and not isinstance(value, bool):
        return value
    elif isinstance(value, float) and value.is_integer():
        return int(value)
    raise OptionError(name, f"must be a whole number, not {value!r}")


def _real(name: str, value: Any, finite: bool) -> float:
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise OptionError(name, f"must be a number, not {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise OptionError(name, f"must be a number, not {value!r}")
    if finite and not math.isfinite(value):
        raise OptionError(name, f"must be a finite number, not {_number(value)}")
    return value


def _number(value: float) -> str:
    """A number as the error shows it, the same however it was given (`1`, `1.0`, `"1"`)."""
    if isinstance(value, int):
        return str(value)
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def _in_range(name: str, value: float, low: float | None, high: float | None) -> None:
    if (low is not None and value < low) or (high is not None and value > high):
        bound = f"between {low} and {high}" if low is not None and high is not None else \
            f"at least {low}" if low is not None else f"at most {high}"
        raise OptionError(name, f"must be {bound}, not {_number(value)}")


class Section:
    """The base of every config section: its values are checked as it is made (and remade, as
    `dataclasses.replace` does), whoever makes it; `check` holds the rules between its fields."""

    def __post_init__(self) -> None:
        hints = section_hints(type(self))
        for leaf in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, leaf.name)
            checked = check_value(leaf, hints[leaf.name], value)
            if checked is not value:
                setattr(self, leaf.name, checked)
        self.check()

    def check(self) -> None:
        """Rules between this section's fields; an `OptionError` naming the option."""
