"""The prompt a trained adapter carries: written beside its weights, read back by every verb.

`prompt.yaml` (template, modalities, media budget, strategy) and the label file sit in the
adapter's directory. A client that names a served adapter without its directory asks the server
(`mllm-mer serve` tells each adapter's prompt), so it never answers in another label set.
"""
from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path
from typing import Any

import yaml

from mllm_mer.config import ClientConfig, ModelConfig
from mllm_mer.core.paths import ADAPTER_LABELS, ADAPTER_PROMPT, user_cache
from mllm_mer.core.types import PromptSetup

log = logging.getLogger(__name__)


def adapter_prompt(model: ModelConfig, client: ClientConfig | None = None,
                   labels_given: bool = False) -> tuple[dict[str, Any], str | None]:
    """The saved prompt of the first adapter that has one (and where it came from)."""
    for path in model.adapters.values():
        file = Path(path) / ADAPTER_PROMPT
        if file.is_file():
            data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
            labels = Path(path) / ADAPTER_LABELS
            if labels.is_file():
                data["labels"] = str(labels)
            return data, path
    named = [name for name, path in model.adapters.items() if not Path(path).exists()]
    if named and client is not None and client.base_url and model.backend == "openai":
        return served_prompt(named[0], client, labels_given)
    return {}, None


def served_prompt(name: str, client: ClientConfig, labels_given: bool) -> tuple[dict[str, Any], str | None]:
    """The prompt the server says adapter `name` was trained with; without one, a refusal unless the
    run names its label set itself."""
    from mllm_mer.backends.openai_client import served_adapter_prompts

    url = client.base_url[0]
    entry = (served_adapter_prompts(client) or {}).get(name)
    if entry is not None and entry.get("prompt") is None:
        return {}, None  # served, and trained without a saved prompt: as for its directory itself
    data = dict((entry or {}).get("prompt") or {})
    if not data:
        reason = (f"adapter {name!r} is used by name over {url}, which does not say what prompt it was trained "
                  f"with (is it `mllm-mer serve`, with that adapter?)")
        if not labels_given:
            raise ValueError(reason + f"; pass --adapter {name}=DIR (its directory) or --labels and --template")
        log.warning("%s; using the --labels given", reason)
        return {}, None
    if entry.get("labels_yaml"):  # the label file itself, kept where the scheme loader reads files
        text = entry["labels_yaml"]
        folder = user_cache() / "served-adapters" / hashlib.sha256(text.encode()).hexdigest()[:16]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / ADAPTER_LABELS).write_text(text, encoding="utf-8")
        data["labels"] = str(folder / ADAPTER_LABELS)
    return data, f"{url} (adapter {name})"


def save_adapter_prompt(adapter_dir: str | Path, setup: PromptSetup, strategy: Any = None) -> Path:
    """Write the resolved prompt beside an adapter (litgpt's save_prompt_style pattern), and the strategy
    it was trained to run with (pass the same at inference)."""
    adapter_dir = Path(adapter_dir)
    data: dict[str, Any] = {"template": setup.template, "modalities": list(setup.modalities),
                            "media": {"max_frames": setup.media.max_frames, "max_pixels": setup.media.max_pixels}}
    if setup.reasoning is not None:  # the order it was trained to answer in, served the same way
        data["reasoning"] = {"order": setup.reasoning.order, "max_tokens": setup.reasoning.max_tokens}
    if strategy is not None:
        data["strategy"] = strategy.fingerprint()
    if setup.scheme.source:
        shutil.copyfile(setup.scheme.source, adapter_dir / ADAPTER_LABELS)
        data["labels"] = ADAPTER_LABELS
    else:
        data["labels"] = setup.scheme.name
    template = Path(setup.template)
    if template.suffix == ".jinja" and template.is_file():
        shutil.copyfile(template, adapter_dir / template.name)
        data["template"] = str((adapter_dir / template.name).resolve())
    out = adapter_dir / ADAPTER_PROMPT
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out
