"""`mllm-mer score`: any system's predictions (or a finished run, under another label set or mapping)
scored against gold with the same metrics, intervals, report and plots as an `evaluate` run, into a run
directory whose run.json says what was scored (the file's hash) and how (the mapping used). No model runs.

Nothing is dropped silently: predictions outside the label set are listed by name and count and scored
as wrong; prediction ids that match no sample and samples without a prediction are counted; the metrics
cover the predicted samples and say `n of N` (`--missing wrong` counts an absent prediction as wrong).
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mllm_mer.core.labels import load_label_scheme, with_label_map
from mllm_mer.core.parsing import list_labels
from mllm_mer.core.types import LabelScheme, LabelSet, Prediction, TaskPrediction
from mllm_mer.evaluation.external import SUFFIXES, Row, file_hash, match_ids, read_rows
from mllm_mer.evaluation.records import PREDICTIONS, read_predictions


@dataclass
class Entry:
    """One scored sample: its gold, the predicted value (None: the system failed on it), probabilities."""

    id: str
    gold: dict[str, Any]
    value: Any
    probabilities: dict[str, float] | None = None
    dialogue: Any = None
    failure: dict[str, Any] | None = None  # a rescored run's own failure, kept as it was
    reference: str | None = None  # the gold manifest's reference description (EMER), when one is named


@dataclass
class Source:
    """What is scored: the entries, the samples they could cover, and the facts for the report."""

    entries: list[Entry]
    total: int
    name: str
    run: dict[str, Any]
    facts: dict[str, Any] = field(default_factory=dict)
    absent: list[Entry] = field(default_factory=list)  # samples without a prediction


def task_scheme(scheme: LabelScheme, task: str, label_map: list[str]) -> tuple[LabelScheme, LabelSet]:
    """The scheme narrowed to the scored task, with the --label-map aliases."""
    if task not in scheme.tasks:
        raise ValueError(f"label set {scheme.name!r} has no task {task!r} (tasks: {', '.join(scheme.tasks)}); "
                         "choose one with --task")
    narrowed = LabelScheme(name=scheme.name, label_sets=(scheme.task(task),), source=scheme.source)
    if label_map:
        narrowed = with_label_map(narrowed, label_map)
    return narrowed, narrowed.label_sets[0]


def _probabilities(ls: LabelSet, given: dict[str, float] | None) -> dict[str, float] | None:
    """The file's probabilities over the label set (names normalised, renormalised to sum to 1)."""
    if not given:
        return None
    found = {label: 0.0 for label in ls.labels}
    for name, value in given.items():
        label = ls.normalise(name)
        if label is not None:
            found[label] += max(float(value), 0.0)
    total = sum(found.values())
    return {k: v / total for k, v in found.items()} if total > 0 else None


def prediction_of(entry: Entry, ls: LabelSet, outside: Counter) -> Prediction:
    """The entry as a Prediction under the label set; a value outside it is a parse failure, counted."""
    if entry.failure is not None:
        return Prediction.from_dict(entry.failure)
    if entry.value is None or (isinstance(entry.value, str) and not entry.value.strip()):
        return Prediction.failure(entry.id, "empty prediction", kind="parse")
    if ls.list_answer:
        labels, unknown = list_labels(ls, entry.value)
        outside.update(unknown)
        given = labels + (unknown if ls.open else [])  # open: a word outside the vocabulary is scored by name
        if given:
            return Prediction(entry.id, tasks={ls.task: TaskPrediction(given[0], labels=given)})
        if isinstance(entry.value, list) and not entry.value:  # a description that states no emotion
            return Prediction.failure(entry.id, f"{ls.task}: no emotion word in the description", kind="parse")
        return Prediction.failure(entry.id, f"{ls.task} {entry.value!r}: no label of the set", kind="parse")
    label = ls.normalise(str(entry.value))
    if label is None:
        outside[str(entry.value).strip()] += 1
        return Prediction.failure(entry.id, f"{ls.task} {str(entry.value).strip()!r} is outside the label set "
                                            "(scored as wrong)", raw=str(entry.value), kind="parse")
    return Prediction(entry.id, tasks={ls.task: TaskPrediction(label, _probabilities(ls, entry.probabilities))})


def records_of(source: Source, ls: LabelSet, missing: str) -> tuple[list[dict[str, Any]], Counter]:
    """predictions.jsonl records of the entries (and of absent samples with `--missing wrong`)."""
    outside: Counter = Counter()
    records = []
    for entry in source.entries:
        records.append({"id": entry.id, "gold": entry.gold, "score": None,
                        "prediction": prediction_of(entry, ls, outside).to_dict(),
                        **({"dialogue": entry.dialogue} if entry.dialogue is not None else {})})
    if missing == "wrong":
        records += [{"id": e.id, "gold": e.gold, "score": None, **({"dialogue": e.dialogue} if e.dialogue else {}),
                     "prediction": Prediction.failure(e.id, "no prediction for this sample", kind="missing")
                     .to_dict()} for e in source.absent]
    return records, outside


def from_file(options, split, ls: LabelSet) -> Source:
    """A predictions file matched to the split's samples."""
    path = Path(options.predictions)
    rows = read_rows(path, options.pred_id_col, options.pred_text_col or options.pred_col, options.prob_col)
    samples = {s.id: s for s in split.samples}
    matched, unmatched = match_ids(rows, list(samples))
    if not matched:
        raise ValueError(f"{path}: no prediction id matched a sample of {split.name} (prediction ids: "
                         f"{', '.join(r.id for r in rows[:3])}; sample ids: {', '.join(list(samples)[:3])}); "
                         "name the id column or template with --pred-id-col")

    if options.reference_col and not any(options.reference_col in s.metadata for s in samples.values()):
        raise ValueError(f"--reference-col {options.reference_col}: no such column in the gold samples of "
                         f"{split.name}")

    def entry(sample_id: str, row: Row | None) -> Entry:
        sample = samples[sample_id]
        reference = sample.metadata.get(options.reference_col) if options.reference_col else None
        return Entry(sample_id, sample.gold, row.value if row else None, row.probabilities if row else None,
                     sample.metadata.get("dialogue"), reference=str(reference) if reference else None)

    entries = [entry(s, matched[s]) for s in samples if s in matched]
    absent = [entry(s, None) for s in samples if s not in matched]
    facts = {"file": str(path.resolve()), "sha256": file_hash(path), "rows": len(rows), "matched": len(matched),
             "unmatched_predictions": len(unmatched), "unmatched_examples": unmatched[:10]}
    return Source(entries, len(samples), split.name, {}, facts, absent)


def from_run(run_dir: Path, task: str, text_field: str | None = None) -> Source:
    """A finished run's own records, to rescore without calling a model; `text_field` (e.g. `rationale`):
    score that free text of each answer instead of its labels."""
    records = read_predictions(run_dir / PREDICTIONS)
    if not records:
        raise ValueError(f"{run_dir}: no predictions.jsonl records to rescore")
    info = json.loads((run_dir / "metrics.json").read_text()).get("run", {}) if (run_dir / "metrics.json").is_file() \
        else {}
    entries = []
    for sample_id, record in records.items():
        prediction = record["prediction"]
        found = (prediction.get("tasks") or {}).get(task) or {}
        value = prediction.get(text_field) if text_field else found.get("labels") or found.get("label")
        entries.append(Entry(sample_id, record.get("gold") or {}, value, found.get("probabilities"),
                             record.get("dialogue"), None if prediction.get("ok") else prediction))
    facts = {"run": str(run_dir.resolve()), "sha256": file_hash(run_dir / PREDICTIONS), "rows": len(records),
             "matched": len(records), "unmatched_predictions": 0, "unmatched_examples": []}
    return Source(entries, len(records), info.get("dataset", run_dir.name), info, facts)


def load_source(cfg) -> tuple[Source, LabelScheme, LabelSet]:
    """What `score` reads: a run directory (gold from its records) or a file matched to --dataset's split."""
    options, data = cfg.score, cfg.data
    if not options.predictions or not options.out:
        raise ValueError("score needs a predictions file (or run directory) and --out: "
                         "mllm-mer score FILE --dataset meld --split test --out DIR")
    path = Path(options.predictions)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such predictions file or run directory")
    if path.is_dir():
        source = from_run(path, data.task, options.pred_text_col)
        labels = options.labels or source.run.get("labels_source") or source.run.get("labels") or "meld"
        scheme, ls = task_scheme(load_label_scheme(labels), data.task, options.label_map)
        return source, scheme, ls
    if path.suffix.lower() not in SUFFIXES:
        raise ValueError(f"{path}: predictions must be {', '.join(SUFFIXES)} (or a run directory)")
    if not data.dataset or not data.data_dir:
        raise ValueError("score needs --dataset and --data-dir for the gold labels (or a run directory to rescore)")
    from mllm_mer.datasets import load_configured

    split = load_configured(data, options.split, options.labels)
    scheme, ls = task_scheme(load_label_scheme(options.labels or split.labels), data.task, options.label_map)
    return from_file(options, split, ls), scheme, ls
