"""Label sets: the closed sets of answers, loaded from prompts/labels/*.yaml.

A label file bundles the tasks asked together (MELD: emotion + sentiment) and
optional worked examples for few-shot templates. A task may name `aliases` (or `synonyms`: the same),
other spellings of its labels; `multi_label: true` (several labels per sample) or `open: true` (an
open-vocabulary answer: a few words of the bundled emotion vocabulary; `labels` may then be left out).
`--labels open` is that open task, built in.
"""
from __future__ import annotations

import re
from pathlib import Path

from mllm_mer.core.emotion_wheels import load_wheels
from mllm_mer.core.paths import PROMPTS_DIR
from mllm_mer.core.types import LabelScheme, LabelSet
from mllm_mer.core.yaml_file import read_yaml

LABELS_DIR = PROMPTS_DIR / "labels"
OPEN = "open"  # the built-in open-vocabulary label set


def fold(text: str) -> str:
    """Case and whitespace folded: how aliases and label-map keys are compared."""
    return " ".join(str(text).lower().split())


def open_scheme(task: str = "emotion") -> LabelScheme:
    """The open-vocabulary task: any few words of the bundled emotion vocabulary."""
    wheels = load_wheels()
    return LabelScheme(name=OPEN, label_sets=(LabelSet(task=task, labels=wheels.vocabulary,
                                                       synonyms=dict(wheels.synonyms), open=True),))


MAX_LABELS = 200  # per task: each is listed in every prompt and enumerated by the grammar
MAX_LABEL_CHARS = 40
MAX_DESCRIPTION_CHARS = 300
RESERVED_TASKS = {"rationale", "cues"}  # keys of the answer object itself
# A label the constrained answer can write and the parser read back as itself: words joined by single
# spaces, hyphens, apostrophes or slashes; no punctuation at either end, no quotes, no markup.
_LABEL = re.compile(r"^[^\W_](?:[\w'/-]| (?! ))*(?<![ '/-])$")
_TASK = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,39}$")


def _check_label(path: Path, task: str, label: object) -> str:
    if not isinstance(label, (str, int)) or isinstance(label, bool):
        raise ValueError(f"{path}: task {task!r}: label {label!r} is not a word (a {type(label).__name__})")
    text = str(label)
    if len(text) > MAX_LABEL_CHARS or not _LABEL.match(text):
        raise ValueError(f"{path}: task {task!r}: label {text[:60]!r} cannot be answered and read back: use words "
                         f"(letters, digits, single spaces, - ' /), at most {MAX_LABEL_CHARS} characters, no "
                         "punctuation at either end")
    return text


def _labels(path: Path, task: str, given: list) -> tuple[str, ...]:
    if len(given) > MAX_LABELS:
        raise ValueError(f"{path}: task {task!r} has {len(given)} labels; at most {MAX_LABELS}")
    labels = tuple(_check_label(path, task, x) for x in given)
    seen: dict[str, str] = {}
    for label in labels:
        if fold(label) in seen:
            raise ValueError(f"{path}: task {task!r}: labels {seen[fold(label)]!r} and {label!r} differ only in "
                             "case or spacing (one could never be told from the other)")
        seen[fold(label)] = label
    return labels


def _descriptions(path: Path, task: str, given: object) -> dict[str, str]:
    if not isinstance(given, dict):
        raise ValueError(f"{path}: task {task!r}: `descriptions` must be a mapping (label: text)")
    long = [str(k) for k, v in given.items() if len(str(v)) > MAX_DESCRIPTION_CHARS]
    if long:
        raise ValueError(f"{path}: task {task!r}: the description of {long[0]!r} is over {MAX_DESCRIPTION_CHARS} "
                         "characters")
    return {str(k): str(v) for k, v in given.items() if isinstance(v, (str, int, float))}


def _label_set(path: Path, number: int, t: dict) -> LabelSet:
    if not isinstance(t, dict) or "task" not in t or not (isinstance(t.get("labels"), list) or t.get("open")):
        raise ValueError(f"{path}: task {number} needs `task:` and a `labels:` list")
    task = str(t["task"])
    if not _TASK.match(task) or task in RESERVED_TASKS:
        raise ValueError(f"{path}: task {number}: {task[:60]!r} cannot name a task (a word of letters, digits and "
                         f"_, not {' or '.join(sorted(RESERVED_TASKS))})")
    is_open = bool(t.get("open"))
    wheels = load_wheels() if is_open else None
    labels = _labels(path, task, t.get("labels") or list(wheels.vocabulary))
    synonyms = dict(wheels.synonyms) if wheels else {}
    for key in ("synonyms", "aliases"):
        given = t.get(key) or {}
        if not isinstance(given, dict):
            raise ValueError(f"{path}: task {number}: `{key}` must be a mapping (other spelling: label)")
        synonyms.update({fold(k): str(v) for k, v in given.items() if isinstance(v, (str, int))})
    return LabelSet(task=task, labels=labels, synonyms=synonyms,
                    descriptions=_descriptions(path, task, t.get("descriptions") or {}),
                    multi_label=bool(t.get("multi_label")), open=is_open)


def alias_applied(ls: LabelSet, word: str) -> str | None:
    """The label an alias reads `word` as (e.g. 'happy' as 'joy'), or None: `word` is a label itself (any case)
    or names none. Aliases change what a corpus says, so every one applied is reported by name and count."""
    label = ls.normalise(str(word))
    if label is None or fold(str(word)).strip(".!\"'") == fold(label):
        return None
    return label


def aliases_applied(ls: LabelSet, words) -> dict[str, int]:
    """'word as label' -> how many of `words` an alias read (most frequent first)."""
    from collections import Counter

    counts = Counter(f"{fold(w)} as {label}" for w in words if (label := alias_applied(ls, w)) is not None)
    return dict(counts.most_common())


def available() -> list[str]:
    return sorted(p.stem for p in LABELS_DIR.glob("*.yaml"))


def load_label_scheme(name_or_path: str | Path) -> LabelScheme:
    """A bundled label set by name (`meld`) or any YAML file in the same format.

    A file that is not a label file gets a ValueError naming the file and what is wrong.
    """
    if str(name_or_path) == OPEN:
        return open_scheme()
    path = Path(name_or_path)
    if not path.is_file():
        path = LABELS_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"unknown label set {name_or_path!r}; bundled: {', '.join(available())}")
    data = read_yaml(path)
    tasks = data.get("tasks")
    if not tasks or not isinstance(tasks, list):
        raise ValueError(f"{path}: not a label file (needs `tasks:`, a list of {{task, labels}})")
    label_sets = [_label_set(path, number, t) for number, t in enumerate(tasks, 1)]
    names = [ls.task for ls in label_sets]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: two tasks named {next(n for n in names if names.count(n) > 1)!r}")
    examples = data.get("examples") or []
    if not isinstance(examples, list) or not all(isinstance(e, dict) and isinstance(e.get("answer"), dict)
                                                 for e in examples):
        raise ValueError(f"{path}: `examples` must be a list of mappings, each with an `answer:` mapping")
    return LabelScheme(name=str(data.get("name", path.stem)), label_sets=tuple(label_sets),
                       examples=tuple(examples), source=str(path.resolve()))


def same_scheme(scheme: LabelScheme, name_or_path: str | Path) -> bool:
    """Whether `name_or_path` names this scheme (a file that cannot be read names another)."""
    try:
        return load_label_scheme(name_or_path) == scheme
    except (OSError, ValueError):
        return False


def check_list_answers(scheme: LabelScheme, scoring: bool, flag: str = "--mode score") -> None:
    """Label scoring gives one distribution over one label per task; a list answer has none."""
    listed = [ls.task for ls in scheme.label_sets if ls.list_answer]
    if scoring and listed:
        raise ValueError(f"{flag} scores one label per task, and {scheme.name!r} answers {', '.join(listed)} with a "
                         "list (multi-label or open vocabulary): use --mode generate without --probabilities")


def with_label_map(scheme: LabelScheme, pairs: list[str], flag: str = "--label-map",
                   named: bool = False) -> LabelScheme:
    """The scheme with `FROM=TO` aliases added to every task that has the label TO (case and
    whitespace folded); a pair whose TO no task has is an error naming the flag. `named`: the map is
    written into the scheme's name (a run's identity)."""
    from dataclasses import replace

    mapping = {}
    for pair in pairs:
        source, sep, target = pair.partition("=")
        if not sep or not source.strip() or not target.strip():
            raise ValueError(f"{flag} {pair!r}: expected FROM=TO (e.g. anxiety=fear)")
        mapping[fold(source)] = target.strip()
    label_sets = []
    for ls in scheme.label_sets:
        by_fold = {fold(label): label for label in ls.labels}
        added = {k: by_fold[fold(v)] for k, v in mapping.items() if fold(v) in by_fold}
        label_sets.append(replace(ls, synonyms={**ls.synonyms, **added}))
    unknown = sorted({v for v in mapping.values() if not any(fold(v) in map(fold, ls.labels)
                                                             for ls in scheme.label_sets)})
    if unknown:
        raise ValueError(f"{flag}: {', '.join(map(repr, unknown))} is not a label of {scheme.name!r}")
    name = f"{scheme.name} (label map {', '.join(f'{k}={v}' for k, v in mapping.items())})" if named else scheme.name
    return replace(scheme, name=name, label_sets=tuple(label_sets))
