"""The README stays a landing page and the docs site cannot drift from the code: every page is in the nav,
every README link resolves, and the generated options reference lists every flag the CLI accepts."""
import argparse
import re
from pathlib import Path

import pytest
import yaml

from mllm_mer.cli import build_parser
from mllm_mer.cli.reference import markdown, verb_flags

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
TEST_COMMAND = ".venv/bin/python -m pytest"


def _nav_pages(entries) -> list[str]:
    pages = []
    for entry in entries:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        pages += _nav_pages(value) if isinstance(value, list) else [value]
    return pages


def _config() -> dict:
    return yaml.safe_load((ROOT / "mkdocs.yml").read_text())


def _verb_section(page: str, verb: str) -> str:
    """The part of the reference page under `## verb`, up to the next verb."""
    start = page.index(f"\n## {verb}\n")
    end = page.find("\n## ", start + 1)
    return page[start:end if end > 0 else None]


def test_the_readme_is_a_landing_page_of_at_most_250_lines():
    assert len(README.read_text().splitlines()) <= 250


def test_the_readme_holds_the_test_command_ci_runs_and_the_inner_loop():
    lines = README.read_text().splitlines()
    assert any(re.fullmatch(rf"{re.escape(TEST_COMMAND)} +# run the tests.*", line) for line in lines)
    assert f"{TEST_COMMAND} tests/unit" in README.read_text()
    # CI runs exactly the README's command (no extra arguments that the README would not show).
    assert TEST_COMMAND in (ROOT / ".ci" / "run").read_text().splitlines()


def test_every_relative_link_of_the_readme_and_contributing_resolves_on_disk():
    for document in (README, ROOT / "CONTRIBUTING.md"):
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", document.read_text()):
            if not re.match(r"[a-z]+://", target):
                assert (document.parent / target).exists(), f"{document.name}: broken link {target}"


def test_every_docs_page_is_in_the_nav_and_every_nav_page_exists():
    config = _config()
    nav = set(_nav_pages(config["nav"]))
    docs = ROOT / config["docs_dir"]
    pages = {p.relative_to(docs).as_posix() for p in docs.rglob("*.md") if "hooks" not in p.parts}
    assert pages - nav == set(), "pages missing from mkdocs.yml's nav"
    generated = {"reference/options.md"}  # written by docs/hooks/reference.py at build time
    assert nav - pages == generated
    assert config["strict"] is True and "docs/hooks/reference.py" in config["hooks"]


def test_site_output_is_ignored_by_git():
    assert "site/" in (ROOT / ".gitignore").read_text().splitlines()


def test_the_options_reference_lists_every_flag_of_evaluate_as_the_cli_parses_them():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["evaluate"]
    section = _verb_section(markdown(), "evaluate")
    actions = [a for a in sub._actions if a.dest.startswith("cfg:")]
    assert len(actions) > 50  # the whole tree, not a stub
    for action in actions:
        shown = action.option_strings[:1] if not isinstance(action, argparse.BooleanOptionalAction) \
            else action.option_strings
        for flag in shown or [action.metavar]:
            assert f"`{flag}`" in section, f"the options reference lacks {flag} of evaluate"
    assert set(verb_flags("evaluate")) >= {flag for a in actions for flag in a.option_strings}


@pytest.mark.parametrize("verb", ["predict", "evaluate", "serve", "finetune", "score", "demo"])
def test_every_verb_of_the_cli_has_its_section_with_types_and_defaults(verb):
    section = _verb_section(markdown(), verb)
    assert "| flag | type | default | help |" in section
    assert "`--max-new-tokens` | `int` | `1024` |" in section if verb != "score" else True


def test_the_reference_row_of_a_flag_carries_its_declared_help_default_and_choices():
    section = _verb_section(markdown(), "predict")
    row = next(line for line in section.splitlines() if line.startswith("| `--backend`"))
    assert "`transformers`" in row and "`vllm`" in row and "`openai`" in row and "who runs the model" in row
    assert "(default:" not in row  # the default has its own column
