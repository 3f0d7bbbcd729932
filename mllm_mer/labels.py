"""Label sets: the closed sets of answers, loaded from prompts/labels/*.yaml.

A label file bundles the tasks asked together (MELD: emotion + sentiment) and
optional worked examples for few-shot templates.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mllm_mer.paths import PROMPTS_DIR
from mllm_mer.types import LabelSet

LABELS_DIR = PROMPTS_DIR / "labels"


@dataclass(frozen=True)
class LabelSpec:
    name: str
    label_sets: tuple[LabelSet, ...]
    examples: tuple[dict[str, Any], ...] = ()

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(ls.task for ls in self.label_sets)

    def task(self, name: str) -> LabelSet:
        for ls in self.label_sets:
            if ls.task == name:
                return ls
        raise KeyError(f"label set {self.name!r} has no task {name!r} (tasks: {', '.join(self.tasks)})")


def available() -> list[str]:
    return sorted(p.stem for p in LABELS_DIR.glob("*.yaml"))


def load_label_spec(name_or_path: str | Path) -> LabelSpec:
    """A bundled label set by name (`meld`) or any YAML file in the same format."""
    path = Path(name_or_path)
    if not path.is_file():
        path = LABELS_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"unknown label set {name_or_path!r}; bundled: {', '.join(available())}")
    data = yaml.safe_load(path.read_text())
    tasks = data.get("tasks") or []
    if not tasks:
        raise ValueError(f"{path}: no tasks")
    label_sets = tuple(
        LabelSet(task=t["task"], labels=tuple(str(x) for x in t["labels"]),
                 synonyms={str(k).lower(): str(v) for k, v in (t.get("synonyms") or {}).items()},
                 descriptions={str(k): str(v) for k, v in (t.get("descriptions") or {}).items()})
        for t in tasks)
    return LabelSpec(name=data.get("name", path.stem), label_sets=label_sets,
                     examples=tuple(data.get("examples") or ()))
