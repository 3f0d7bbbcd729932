"""The options reference of every verb, in Markdown, read off the parser the CLI itself builds.

Nothing here declares an option: each row comes from an action of `build_parser()` (which
`mllm_mer.cli.args` generates from the config tree) and from the config field behind it (its type
and default), so the reference changes whenever the tree does. The docs site renders it at build
time (`docs/hooks/reference.py`); `python -m mllm_mer.cli.reference` prints it.
"""
from __future__ import annotations

import argparse
import dataclasses
import typing

from mllm_mer.cli import VERBS, build_parser
from mllm_mer.config import choices_of, leaf_fields
from mllm_mer.config.checks import section_hints

__all__ = ["markdown", "verb_flags"]

_HEADER = """# Options reference

Every verb's options, generated from the config tree (`mllm_mer/config/`) each time the site is built,
so this page is what `mllm-mer VERB --help` says. Each option also has a `--section.name` spelling, fills
the same field from a YAML file (`--config FILE.yaml`, flat keys or sections) and from `name=value`
words; flags win over both. `--debug` shows tracebacks instead of one-line errors.
"""


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]  # noqa: SLF001
    return dict(actions[0].choices) if actions else {}


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _default_of(spec: dataclasses.Field) -> object:
    if spec.default is not dataclasses.MISSING:
        return spec.default
    return spec.default_factory() if spec.default_factory is not dataclasses.MISSING else None


def _type_name(hint: object) -> str:
    if isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("typing.", "")


def _help_of(action: argparse.Action, spec: dataclasses.Field) -> str:
    """The flag's help without the default that args.py appends (the table has its own column)."""
    text, own = action.help or "", spec.metadata.get("help", "")
    cut = text.find(" (default: ", len(own)) if text.startswith(own) else -1
    return text[:cut] if cut >= 0 and text.endswith(")") else text


def _flag_cell(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"`{action.metavar}` (positional)"
    if isinstance(action, argparse.BooleanOptionalAction):
        return " / ".join(f"`{flag}`" for flag in action.option_strings)
    return f"`{action.option_strings[0]}`"


def _row(action: argparse.Action, spec: dataclasses.Field, hint: object) -> str:
    choices = choices_of(hint, spec)
    kind = "one of " + ", ".join(f"`{c}`" for c in choices) if choices else f"`{_type_name(hint)}`"
    default = _default_of(spec)
    shown = "" if default is None or default in ([], {}) else f"`{default!r}`"
    return f"| {_flag_cell(action)} | {_cell(kind)} | {_cell(shown)} | {_cell(_help_of(action, spec))} |"


def _verb_section(name: str, sub: argparse.ArgumentParser) -> list[str]:
    verb = VERBS[name]
    sections, leaves = typing.get_type_hints(verb.config), leaf_fields(verb.config)
    lines = [f"## {name}", "", f"`mllm-mer {name}`: {verb.help}", ""]
    for group in sub._action_groups:  # noqa: SLF001 (argparse has no public list of groups)
        section_type = sections.get(group.title)
        actions = [a for a in group._group_actions if a.dest.startswith("cfg:")]  # noqa: SLF001
        if section_type is None or not actions:
            continue
        # A section without a docstring has the signature dataclasses writes in its place: no description.
        described = group.description and not group.description.startswith(f"{section_type.__name__}(")
        lines += [f"### {name}: {group.title}", ""] + ([group.description, ""] if described else [])
        lines += ["| flag | type | default | help |", "| --- | --- | --- | --- |"]
        hints = section_hints(section_type)
        for action in actions:
            spec = leaves[action.dest.split(":", 1)[1]][1]
            lines.append(_row(action, spec, hints[spec.name]))
        lines.append("")
    return lines


def verb_flags(name: str) -> list[str]:
    """Every option string and positional name the CLI accepts for one verb (what the reference must list)."""
    sub = _subparsers(build_parser())[name]
    return [flag for a in sub._actions if a.dest.startswith("cfg:")  # noqa: SLF001
            for flag in (a.option_strings or [a.metavar])]


def markdown() -> str:
    """The whole reference page: per verb, per config section, a table of flag, type, default and help."""
    lines = [_HEADER]
    for name, sub in _subparsers(build_parser()).items():
        lines += _verb_section(name, sub)
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
