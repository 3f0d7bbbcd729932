"""The command-line parser, generated from the config tree (`mllm_mer.config`).

Every leaf of a verb's config becomes `--leaf-name` (also `--section.leaf`), with the
field's help and default; `--config FILE.yaml` and `key=value` words fill the same
fields. Precedence: defaults < config file < key=value < flags < (secrets only) the
environment when nothing set them. Unknown options fail with the nearest valid name.
This is the only place in the package that declares command-line flags.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import re
import typing
from typing import Any

from mllm_mer.config import (
    ConfigError,
    build,
    choices_of,
    flatten,
    leaf_fields,
    load_config,
    read_yaml,
    unknown_key_error,
)
from mllm_mer.config.checks import section_hints, unwrap
from mllm_mer.core.paths import config_file

# Secrets come from the environment rather than the command line (which `ps` shows to everyone).
ENVIRONMENT = {"api_key": "MLLM_MER_API_KEY", "auth": "MLLM_MER_APP_AUTH"}
_OVERRIDE = re.compile(r"^[A-Za-z_][\w.\-]*=")


def _comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _leaf_kwargs(hint: Any, leaf: dataclasses.Field) -> dict[str, Any]:
    """argparse keywords for one field, from its type and metadata. Values are checked by the section
    they fill (`mllm_mer.config.checks`), not here, so that a flag, a YAML key and the app's own config
    meet the same one-line error; argparse only splits the words."""
    default = leaf.default if leaf.default is not dataclasses.MISSING else leaf.default_factory()
    help_text = leaf.metadata.get("help", "")
    if leaf.name in ENVIRONMENT:
        help_text += f" [env {ENVIRONMENT[leaf.name]}]"
    shown = default if not isinstance(default, (list, dict)) or default else None
    kwargs: dict[str, Any] = {"help": f"{help_text} (default: {shown})" if shown is not None else help_text}
    base = unwrap(hint)[0]
    choices = choices_of(hint, leaf)
    if base is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif choices:
        kwargs["metavar"] = "{" + ",".join(map(str, choices)) + "}"
    elif typing.get_origin(base) is list or base is list:
        # Repeatable, and comma-separated values split (`--modalities text,video`), except paths.
        kwargs.update(action="extend", type=(lambda v: [v]) if leaf.name == "adapter" else _comma_list)
    return kwargs


def add_config_arguments(parser: argparse.ArgumentParser, cls: type, hidden: tuple[str, ...] = ()) -> None:
    """One flag per leaf of `cls`, grouped by section; values land under `cfg:<flat name>`. `hidden`: leaves
    this verb has but does not use (no flag; they keep their defaults)."""
    former = {}
    for old, new in getattr(cls, "former_names", {}).items():
        former.setdefault(new, []).append(old)
    groups: dict[str, argparse._ArgumentGroup] = {}
    for flat, (section_name, leaf) in leaf_fields(cls).items():
        if flat in hidden:
            continue
        section_type = typing.get_type_hints(cls)[section_name]
        if section_name not in groups:
            doc = (section_type.__doc__ or "").strip().splitlines()
            groups[section_name] = parser.add_argument_group(section_name, doc[0] if doc else None)
        group = groups[section_name]
        kwargs = _leaf_kwargs(section_hints(section_type)[leaf.name], leaf)
        kwargs.setdefault("metavar", flat.upper())
        if leaf.metadata.get("positional"):
            nargs = "*" if kwargs.get("action") == "extend" else "?"
            kwargs.pop("action", None)
            if nargs == "*":
                kwargs["type"] = str
            group.add_argument(f"cfg:{flat}", nargs=nargs, default=argparse.SUPPRESS, **kwargs)
            continue
        flags = [f"--{flat.replace('_', '-')}"]
        if kwargs.get("action") is not argparse.BooleanOptionalAction:  # which would add --no- to each alias
            flags += [f"--{section_name}.{leaf.name}"] + ([f"--{flat}"] if "_" in flat else [])
            for old in former.get(flat, []):  # a spelling from before the option moved
                flags += [f"--{old}"] if "." in old else [f"--{old.replace('_', '-')}", f"--{old}"]
        group.add_argument(*flags, dest=f"cfg:{flat}", default=argparse.SUPPRESS, **kwargs)
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    parser.add_argument("--config", metavar="FILE.yaml", help="read options from a YAML file (flat keys or sections; "
                                                              "flags and key=value words override it), or a "
                                                              "bundled recipe by name (`mllm-mer ls recipes`)")


def split_overrides(words: list[str]) -> tuple[list[str], list[str]]:
    """Leftover words -> (`key=value` overrides, anything else)."""
    overrides = [w for w in words if _OVERRIDE.match(w) and not w.startswith("-")]
    return overrides, [w for w in words if w not in overrides]


def config_from_namespace(cls: type, namespace: argparse.Namespace, overrides: list[str]):
    """The verb config: defaults < --config file < key=value < flags < environment (for unset secrets)."""
    given = {k[4:]: v for k, v in vars(namespace).items() if k.startswith("cfg:")}
    path = config_file(getattr(namespace, "config", None))
    config = load_config(cls, path, overrides, **given)
    _apply_environment(config, cls)
    return config


def _apply_environment(config: Any, cls: type) -> None:
    for leaf, (section, spec) in leaf_fields(cls).items():
        variable = ENVIRONMENT.get(leaf)
        if variable and getattr(getattr(config, section), spec.name) is None and os.environ.get(variable):
            setattr(getattr(config, section), spec.name, os.environ[variable])


def reject_unknown(words: list[str], parser: argparse.ArgumentParser) -> None:
    """Unknown flags end the command with the nearest valid one."""
    flags = [s for a in parser._actions for s in a.option_strings]  # noqa: SLF001 (argparse has no public list)
    for word in words:
        name = word.split("=", 1)[0]
        if name.startswith("-"):
            raise unknown_key_error(name, flags)
        raise ConfigError(f"unexpected argument {word!r}")


__all__ = ["add_config_arguments", "build", "config_from_namespace", "flatten", "read_yaml", "reject_unknown",
           "split_overrides"]
