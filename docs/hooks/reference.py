"""MkDocs hook: the options reference page (`reference/options.md`), generated from the CLI's parser at build time."""
from __future__ import annotations

from mkdocs.structure.files import File, Files


def on_files(files: Files, config) -> Files:
    from mllm_mer.cli.reference import markdown

    files.append(File.generated(config, "reference/options.md", content=markdown()))
    return files
