"""Label sets: the closed sets of answers, loaded from prompts/labels/*.yaml.

A label file bundles the tasks asked together (MELD: emotion + sentiment) and
optional worked examples for few-shot templates.
"""
from __future__ import annotations

from pathlib import Path

from mllm_mer.core.paths import PROMPTS_DIR
from mllm_mer.core.types import LabelScheme, LabelSet
from mllm_mer.core.yaml_file import read_yaml

LABELS_DIR = PROMPTS_DIR / "labels"


def available() -> list[str]:
    return sorted(p.stem for p in LABELS_DIR.glob("*.yaml"))


def load_label_scheme(name_or_path: str | Path) -> LabelScheme:
    """A bundled label set by name (`meld`) or any YAML file in the same format.

    A file that is not a label file gets a ValueError naming the file and what is wrong.
    """
    path = Path(name_or_path)
    if not path.is_file():
        path = LABELS_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"unknown label set {name_or_path!r}; bundled: {', '.join(available())}")
    data = read_yaml(path)
    tasks = data.get("tasks")
    if not tasks or not isinstance(tasks, list):
        raise ValueError(f"{path}: not a label file (needs `tasks:`, a list of {{task, labels}})")
    label_sets = []
    for number, t in enumerate(tasks, 1):
        if not isinstance(t, dict) or "task" not in t or not isinstance(t.get("labels"), list):
            raise ValueError(f"{path}: task {number} needs `task:` and a `labels:` list")
        label_sets.append(LabelSet(
            task=str(t["task"]), labels=tuple(str(x) for x in t["labels"]),
            synonyms={str(k).lower(): str(v) for k, v in (t.get("synonyms") or {}).items()},
            descriptions={str(k): str(v) for k, v in (t.get("descriptions") or {}).items()}))
    return LabelScheme(name=str(data.get("name", path.stem)), label_sets=tuple(label_sets),
                       examples=tuple(data.get("examples") or ()), source=str(path.resolve()))
