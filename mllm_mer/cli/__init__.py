"""`mllm-mer VERB ...`: one command; each verb is a typed function of its config (mllm_mer.config).

Every verb takes its options as flags, as `--config FILE.yaml`, or as `key=value` words;
the flags are generated from the config tree (`mllm_mer.cli.args`). The verbs themselves are
a table (`mllm_mer.cli.verbs.VERBS`).
"""
from __future__ import annotations

import argparse
import sys

from mllm_mer.cli.args import add_config_arguments, config_from_namespace, reject_unknown, split_overrides
from mllm_mer.cli.interrupted import interrupted_line
from mllm_mer.cli.verbs import VERBS, Verb

__all__ = ["VERBS", "build_parser", "interrupted_line", "main", "parse"]


def build_parser(verbs: dict[str, Verb] = VERBS) -> argparse.ArgumentParser:
    # No abbreviations: a prefix that matches one flag today could match another tomorrow.
    parser = argparse.ArgumentParser(prog="mllm-mer", description=__doc__, allow_abbrev=False,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for name, verb in verbs.items():
        add_config_arguments(sub.add_parser(name, help=verb.help, description=verb.help, allow_abbrev=False),
                             verb.config, verb.hidden)
    return parser


def parse(argv: list[str], verbs: dict[str, Verb] = VERBS):
    """(verb name, its config, words passed through) from a command line."""
    parser = build_parser(verbs)
    if len(argv) > 1 and argv[1] == "--":  # `mllm-mer app -- --model M`: the old spelling
        argv = [argv[0], *argv[2:]]
    namespace, rest = parser.parse_known_args(argv)
    verb = verbs[namespace.verb]
    overrides, rest = split_overrides(rest)
    if rest and not verb.passthrough:
        reject_unknown(rest, parser._subparsers._group_actions[0].choices[namespace.verb])  # noqa: SLF001
    return namespace, config_from_namespace(verb.config, namespace, overrides), rest


def main(argv: list[str] | None = None) -> int:
    """Run a verb; a user's mistake (core.types.UserError, and the ValueErrors and OSErrors the project raises
    for bad options, files and connections) is one line on stderr and exit code 2; a bug keeps its traceback."""
    from mllm_mer.core.types import UserError

    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    try:
        namespace, cfg, rest = parse(argv)
        verb = VERBS[namespace.verb]
        if verb.starts_engines:
            from mllm_mer.serving.process_guard import exit_on_sigterm, start_guard

            exit_on_sigterm()
            start_guard()
        return verb.run(cfg, rest) if verb.passthrough else verb.run(cfg)
    except KeyboardInterrupt:
        if debug:
            raise
    except (UserError, ValueError, OSError) as error:  # ConfigError, MediaError, DatasetError are ValueErrors
        if debug:
            raise
        name = next((a for a in argv if not a.startswith("-")), "")
        print(f"mllm-mer {name}: error: {error}", file=sys.stderr)
        return 2
    # Only Ctrl-C gets here, once the interrupted frames are gone (a progress bar has closed its line).
    print(interrupted_line(argv, locals().get("cfg")), file=sys.stderr)
    return 130
