"""Building a verb's config from flat keys, `section.key` keys, YAML files and `key=value` overrides.

A section is a dataclass of leaf options (`mllm_mer.config.sections`); a verb's config is a
dataclass whose fields are sections (`mllm_mer.config.verbs`). A flat key (`dtype`) or a
section key (`model.dtype`, or a nested YAML mapping) reaches the same field. A section a verb
holds under a prefix (`field(metadata={"prefix": "agent_"})`) has its leaves' flat names
namespaced (`agent_max_steps`), so one section serves several verbs without a mirror; flat names
are unique within a verb. Every section checks its own values as it is made (`Section`), so the
command line, YAML files, overrides, the app and Python callers meet the same one-line errors.
"""
from __future__ import annotations

import dataclasses
import difflib
from dataclasses import field, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from mllm_mer.config.checks import OptionError, Section, choices_of, section_hints, unwrap
from mllm_mer.core.yaml_file import ConfigError, read_yaml

__all__ = ["ConfigError", "OptionError", "Section", "build", "check_config", "choices_of", "flatten", "leaf_fields",
           "load_config", "option", "parse_overrides", "read_yaml", "to_flat", "unknown_key_error"]


def option(default: Any = None, help: str = "", **extra: Any) -> Any:  # noqa: A002 (argparse's word)
    """A documented field; mutable defaults are copied per instance. `low`/`high`: its range; `choices`:
    the names it takes (a registry's); `finite=False`: NaN and infinities make sense for it."""
    metadata = {"help": help, **extra}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def leaf_fields(cls: type) -> dict[str, tuple[str, dataclasses.Field]]:
    """Flat leaf name -> (section name, field) for a verb config class. A section held under a prefix
    names its leaves with it; a flat name in two sections is a definition error (namespace one)."""
    leaves: dict[str, tuple[str, dataclasses.Field]] = {}
    sections = {section.name for section in fields(cls)}
    for section in fields(cls):
        prefix = section.metadata.get("prefix", "")
        for leaf in fields(_section_type(cls, section.name)):
            flat = prefix + leaf.name
            if flat in leaves:
                raise TypeError(f"{cls.__name__}: option {flat!r} is in sections {leaves[flat][0]!r} and "
                                f"{section.name!r}; hold one under a prefix")
            # `engine: {...}` in YAML is the engine section; a leaf of that name must not take a mapping too.
            if flat in sections and unwrap(section_hints(_section_type(cls, section.name))[leaf.name])[0] is dict:
                raise TypeError(f"{cls.__name__}: option {flat!r} takes a mapping and shares a section's name")
            leaves[flat] = (section.name, leaf)
    return leaves


def _section_type(cls: type, name: str) -> type:
    import typing

    hint = typing.get_type_hints(cls)[name]
    if not is_dataclass(hint):
        raise TypeError(f"{cls.__name__}.{name} is not a section dataclass")
    return hint


def _former_names(cls: type) -> dict[str, str]:
    """Names a verb took before an option moved (old flat or `section.key` spelling -> current flat name),
    still accepted."""
    return getattr(cls, "former_names", {})


def unknown_key_error(key: str, known: list[str], where: str = "") -> ConfigError:
    close = nearest(key, known)
    hint = f"; did you mean {close!r}?" if close else ""
    return ConfigError(f"{where}unknown option {key!r}{hint}")


def nearest(key: str, known: list[str]) -> str | None:
    """The valid name a mistyped one most likely meant: the fewest edits (a swap of two neighbouring
    letters is one), then the same length (`--modle` is `--model` with two letters swapped, not `--mode`
    with one more), then difflib's similarity."""
    scored = [(_distance(key, name), abs(len(name) - len(key)), -difflib.SequenceMatcher(None, key, name).ratio(),
               name) for name in known]
    if not scored:
        return None
    distance, _, similarity, name = min(scored)
    return name if distance <= max(2, len(key) // 3) or -similarity >= 0.6 else None


def _distance(a: str, b: str) -> int:
    """Optimal string alignment distance: insertions, deletions, substitutions, adjacent swaps."""
    rows = [list(range(len(b) + 1))]
    for i in range(1, len(a) + 1):
        row = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            row[j] = min(rows[-1][j] + 1, row[j - 1] + 1, rows[-1][j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], rows[-2][j - 2] + 1)
        rows.append(row)
    return rows[-1][-1]


def flatten(cls: type, data: dict[str, Any], where: str = "") -> dict[str, Any]:
    """Flat leaf values from a mapping of flat keys, `section.key` keys and section mappings."""
    leaves = leaf_fields(cls)
    by_section = {(s, spec.name): flat for flat, (s, spec) in leaves.items()}
    sections = {f.name for f in fields(cls)}
    former = _former_names(cls)
    flat: dict[str, Any] = {}
    for key, value in (data or {}).items():
        key = str(key).replace("-", "_")
        key = former.get(key, key)
        section, dot, leaf = key.partition(".")
        if dot:
            if (section, leaf) not in by_section:
                raise unknown_key_error(key, [f"{s}.{spec.name}" for s, spec in leaves.values()], where)
            flat[by_section[section, leaf]] = value
        elif key in sections and isinstance(value, dict):
            flat.update(flatten(cls, {f"{key}.{k}": v for k, v in value.items()}, where))
        elif key in leaves:
            flat[key] = value
        else:
            raise unknown_key_error(key, list(leaves) + sorted(sections), where)
    return flat


def build(cls: type, flat: dict[str, Any] | None = None, **values: Any):
    """A verb config from flat leaf values (`build(EvaluateConfig, dtype="float32", split="test")`); each
    section checks its values as it is made (`Section`)."""
    data = flatten(cls, {**(flat or {}), **values})
    leaves = leaf_fields(cls)
    per_section: dict[str, dict[str, Any]] = {f.name: {} for f in fields(cls)}
    for key, value in data.items():
        section, spec = leaves[key]
        per_section[section][spec.name] = value
    made = {}
    for section in fields(cls):
        try:
            made[section.name] = _section_type(cls, section.name)(**per_section[section.name])
        except OptionError as error:  # a prefixed section's leaf is named as this verb spells it
            prefix = section.metadata.get("prefix", "").replace("_", "-")
            if not prefix or not error.name.startswith("--"):
                raise
            raise error.renamed(f"--{prefix}{error.name[2:]}") from None
    return cls(**made)


def check_config(config: Any) -> None:
    """Check a verb config again after its sections were changed in place (making them checks them)."""
    for section in fields(config):
        part = getattr(config, section.name)
        if isinstance(part, Section):
            part.__post_init__()


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
    """Flat leaf name -> value of a verb config (what a YAML file with flat keys would hold)."""
    return {flat: getattr(getattr(config, section), spec.name)
            for flat, (section, spec) in leaf_fields(type(config)).items()}
