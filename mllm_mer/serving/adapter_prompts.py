"""What `serve` tells its clients of each adapter: the prompt it was trained with (read-only).

A client that names an adapter without its directory learns the adapter's label set, template
and media budget here, so it never answers in another label set.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mllm_mer.core.paths import ADAPTER_LABELS, ADAPTER_PROMPT, ADAPTER_PROMPTS_ROUTE

ROUTE = ADAPTER_PROMPTS_ROUTE
ENV = "MLLM_MER_ADAPTER_PROMPTS"  # the server process reads the table from here (JSON)


def adapter_prompts(adapters: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Adapter name -> {"prompt": its prompt.yaml (None: none saved), "labels_yaml": its label file's text}."""
    found = {}
    for name, path in adapters.items():
        prompt, labels = Path(path) / ADAPTER_PROMPT, Path(path) / ADAPTER_LABELS
        found[name] = {"prompt": (yaml.safe_load(prompt.read_text(encoding="utf-8")) or {}) if prompt.is_file()
                       else None,
                       "labels_yaml": labels.read_text(encoding="utf-8") if labels.is_file() else None}
    return found
