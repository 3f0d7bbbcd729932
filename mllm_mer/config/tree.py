"""Building a verb's config from flat keys, `section.key` keys, YAML files and `key=value` overrides.

A section is a dataclass of leaf options (`mllm_mer.config.sections`); a verb's config is a
dataclass whose fields are sections (`mllm_mer.config.verbs`). A flat key (`dtype`) or a
section key (`model.dtype`, or a nested YAML mapping) reaches the same field; leaf names are
unique within a verb.
"""
from __future__ import annotations

import dataclasses
import difflib
from dataclasses import field, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from mllm_mer.core.yaml_file import ConfigError, read_yaml

__all__ = ["ConfigError", "build", "check_ranges", "flatten", "leaf_fields", "load_config", "option",
           "parse_overrides", "read_yaml", "to_flat", "unknown_key_error"]


def option(default: Any = None, help: str = "", **extra: Any) -> Any:  # noqa: A002 (argparse's word)
    """A documented field; mutable defaults are copied per instance."""
    metadata = {"help": help, **extra}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)




def leaf_fields(cls: type) -> dict[str, tuple[str, dataclasses.Field]]:
    """Flat leaf name -> (section name, field) for a verb config class."""
    leaves: dict[str, tuple[str, dataclasses.Field]] = {}
    for section in fields(cls):
        for leaf in fields(_section_type(cls, section.name)):
            if leaf.name in leaves:
                raise TypeError(f"{cls.__name__}: option {leaf.name!r} is in two sections")
            leaves[leaf.name] = (section.name, leaf)
    return leaves


def _section_type(cls: type, name: str) -> type:
    import typing

    hint = typing.get_type_hints(cls)[name]
    if not is_dataclass(hint):
        raise TypeError(f"{cls.__name__}.{name} is not a section dataclass")
    return hint


def unknown_key_error(key: str, known: list[str], where: str = "") -> ConfigError:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"{where}unknown option {key!r}{hint}")


def flatten(cls: type, data: dict[str, Any], where: str = "") -> dict[str, Any]:
    """Flat leaf values from a mapping of flat keys, `section.key` keys and section mappings."""
    leaves = leaf_fields(cls)
    sections = {f.name for f in fields(cls)}
    flat: dict[str, Any] = {}
    for key, value in (data or {}).items():
        key = str(key).replace("-", "_")
        section, dot, leaf = key.partition(".")
        if dot:
            if section not in sections or leaf not in leaves or leaves[leaf][0] != section:
                raise unknown_key_error(key, [f"{s}.{k}" for k, (s, _) in leaves.items()], where)
            flat[leaf] = value
        elif key in sections and isinstance(value, dict) and not (key in leaves and leaves[key][1].type == "dict"):
            flat.update(flatten(cls, {f"{key}.{k}": v for k, v in value.items()}, where))
        elif key in leaves:
            flat[key] = value
        else:
            raise unknown_key_error(key, list(leaves) + sorted(sections), where)
    return flat


def build(cls: type, flat: dict[str, Any] | None = None, **values: Any):
    """A verb config from flat leaf values (`build(EvaluateConfig, dtype="float32", split="test")`)."""
    data = flatten(cls, {**(flat or {}), **values})
    leaves = leaf_fields(cls)
    per_section: dict[str, dict[str, Any]] = {f.name: {} for f in fields(cls)}
    for key, value in data.items():
        per_section[leaves[key][0]][key] = value
    built = cls(**{name: _section_type(cls, name)(**kw) for name, kw in per_section.items()})
    check_ranges(built)
    return built


def check_ranges(config: Any) -> None:
    """Every option's declared range (`low`, `high`), checked before anything loads: one clear error."""
    for leaf, (section, spec) in leaf_fields(type(config)).items():
        value, low, high = getattr(getattr(config, section), leaf), spec.metadata.get("low"), spec.metadata.get("high")
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if (low is not None and value < low) or (high is not None and value > high):
            bound = f"between {low} and {high}" if low is not None and high is not None else \
                f"at least {low}" if low is not None else f"at most {high}"
            raise ConfigError(f"--{leaf.replace('_', '-')} must be {bound}, not {value}")


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`key=value` pairs, values read as YAML (`limit=8`, `modalities=[text,video]`)."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not key=value")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as error:
            problem = getattr(error, "problem", None) or str(error).splitlines()[0]
            raise ConfigError(f"override {item!r}: not a YAML value ({problem})") from None
    return out


def load_config(cls: type, path: str | Path | None = None, overrides: list[str] | None = None, **values: Any):
    """A verb config from a YAML file, then `key=value` overrides, then keyword values."""
    data = flatten(cls, read_yaml(path), f"{path}: ") if path else {}
    data.update(flatten(cls, parse_overrides(overrides or [])))
    data.update(values)
    return build(cls, data)


def to_flat(config: Any) -> dict[str, Any]:
    """Leaf name -> value of a verb config (what a YAML file with flat keys would hold)."""
    return {leaf: getattr(getattr(config, section), leaf) for leaf, (section, _) in leaf_fields(type(config)).items()}
