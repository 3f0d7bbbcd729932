"""The field's metrics over a run's records: per task, failures by kind, gold issues, modality coverage and
emotion shifts in dialogues (each strategy reports its own extras: strategies.reporting)."""
from __future__ import annotations

from collections import Counter
from typing import Any

from mllm_mer.conversation.context import dialogues_of
from mllm_mer.conversation.shifts import pooled_shift_metrics
from mllm_mer.core.emotion_wheels import load_wheels
from mllm_mer.core.labels import aliases_applied
from mllm_mer.core.types import LabelScheme, LabelSet, Prediction
from mllm_mer.datasets import DatasetError
from mllm_mer.evaluation.selective import selective_metrics
from mllm_mer.evaluation.set_metrics import multilabel_intervals, multilabel_metrics, open_vocab_metrics
from mllm_mer.evaluation.uncertainty import NOTE, classification_intervals
from mllm_mer.prompting import as_list
from mllm_mer.stages.calibration import arrays as calibration_arrays
from mllm_mer.stages.calibration import calibration_metrics
from mllm_mer.stages.metrics import classification_metrics, sentiment_regression_metrics


def dialogue_metrics(samples: list, records: dict[str, dict[str, Any]], task: str) -> dict[str, Any] | None:
    """For dialogue datasets: emotion-shift detection (pooled over dialogues) and accuracy per speaker."""
    dialogues = [d for d in dialogues_of([s for s in samples if s.id in records]) if len(d) > 1]
    if not dialogues:
        return None
    per_speaker: dict[str, list[bool]] = {}
    turns_labelled = []
    for turns in dialogues:
        gold = [s.gold.get(task) for s in turns]
        predicted = [Prediction.from_dict(records[s.id]["prediction"]).label(task) for s in turns]
        turns_labelled.append(([s.speaker or "" for s in turns], gold, predicted))
        for s, g, p in zip(turns, gold, predicted, strict=True):
            per_speaker.setdefault(s.speaker or "", []).append(g is not None and g == p)
    top = sorted(per_speaker.items(), key=lambda item: -len(item[1]))[:10]
    return {"dialogues": len(dialogues), **pooled_shift_metrics(turns_labelled),
            "speaker_accuracy": {name: {"accuracy": sum(hits) / len(hits), "n": len(hits)} for name, hits in top}}


def _gold_of(ls: LabelSet, raw: Any) -> tuple[Any, list[str]]:
    """(gold label, or list of labels for list answers, or None; the gold words that map to nothing)."""
    if ls.open:
        return as_list(raw), []
    if ls.multi_label:
        words = as_list(raw)
        labels = [ls.normalise(w) for w in words]
        outside = [w for w, label in zip(words, labels, strict=True) if label is None]
        return (None if outside or not words else sorted(set(labels))), outside
    label = ls.normalise(str(raw))
    return label, [] if label is not None else [str(raw)]


def _predicted_of(ls: LabelSet, prediction: Prediction) -> Any:
    if not prediction.ok or ls.task not in prediction.tasks:
        return None
    found = prediction.tasks[ls.task]
    return (found.labels or [found.label]) if ls.list_answer else found.label


def task_metrics(records: list[dict[str, Any]], predictions: list[Prediction], ls: LabelSet,
                 groups: dict[str, Any] | None = None) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """(metrics with bootstrap intervals, or None without usable gold; the gold issues) of one task."""
    gold, pred, group, outside, missing = [], [], [], Counter(), 0
    for record, prediction in zip(records, predictions, strict=True):
        raw_gold = record["gold"].get(ls.task)
        if raw_gold is None or raw_gold == "":
            missing += 1
            continue
        label, unmapped = _gold_of(ls, raw_gold)
        if label is None:
            outside.update(unmapped)
            continue
        gold.append(label)
        pred.append(_predicted_of(ls, prediction))
        group.append((groups or {}).get(record["id"]))
    issues = {"outside_label_set": sum(outside.values()), "missing": missing}
    if not gold:
        return None, issues
    groups_or_none = group if groups else None
    if ls.open:
        metrics = open_vocab_metrics(gold, pred, load_wheels(), groups_or_none)
    elif ls.multi_label:
        metrics = multilabel_metrics(gold, pred, ls.labels)
        metrics["intervals"] = multilabel_intervals(gold, pred, ls.labels, groups_or_none)
    else:
        metrics = classification_metrics(gold, pred, ls.labels)
        metrics["intervals"] = classification_intervals(gold, pred, ls.labels, groups_or_none)
    metrics["gold_outside_label_set"] = issues["outside_label_set"]
    words = [w for r in records if r["gold"].get(ls.task) not in (None, "")
             for w in (as_list(r["gold"][ls.task]) if ls.list_answer else [str(r["gold"][ls.task])])]
    if not ls.open and (aliased := aliases_applied(ls, words)):  # by name and count, as the labels outside the set
        metrics["gold_aliases"] = aliased
    if outside:  # by name and count
        metrics["gold_outside_names"] = dict(outside.most_common())
    return metrics, issues


def compute_metrics(records: list[dict[str, Any]], spec: LabelScheme, dataset: str,
                    requested: tuple[str, ...] = (), groups: dict[str, Any] | None = None,
                    abstain_below: float | None = None) -> dict[str, Any]:
    """The field's metrics per task (with seeded bootstrap intervals; `groups`: sample id -> dialogue,
    resampled whole), failures by kind, the gold labels the metrics could not use, and how many samples
    brought each modality (with a warning for a requested one none had)."""
    if not records:
        raise DatasetError("no predictions to score")
    predictions = [Prediction.from_dict(r["prediction"]) for r in records]
    failures = [{"id": p.sample_id, "error": p.error, "kind": p.error_kind or "parse"} for p in predictions if not p.ok]
    result: dict[str, Any] = {"n_samples": len(records), "n_failed": len(failures),
                              "failures_by_kind": dict(Counter(f["kind"] for f in failures)), "failures": failures,
                              "gold_issues": {}, "tasks": {}}
    seen = [r["inputs"]["modalities"] for r in records if "inputs" in r]
    if seen:
        result["modalities_present"] = {m: sum(m in s for s in seen) for m in requested}
        result["warnings"] = [f"modality {m!r} was requested but no sample had it: the numbers do not use it"
                              for m, n in result["modalities_present"].items() if n == 0]
    for ls in spec.label_sets:
        metrics, result["gold_issues"][ls.task] = task_metrics(records, predictions, ls, groups)
        if metrics is not None:
            if not ls.list_answer:
                probs, gold = calibration_arrays(records, ls.task, ls.labels)
                metrics.update(calibration_metrics(probs, gold))
                metrics.update(selective_metrics(probs, gold, abstain_below))
            result["tasks"][ls.task] = metrics
    result["intervals_note"] = NOTE
    if dataset in ("mosi7", "mosei7"):
        labels = spec.task("sentiment").labels
        scores = [r.get("score") for r in records]
        predicted = [float(labels.index(p.label("sentiment")) - 3) if p.ok and p.label("sentiment") else None
                     for p in predictions]
        result["regression"] = sentiment_regression_metrics(scores, predicted)
    return result
