"""The field's metrics over a run's records: per task, failures by kind, gold issues, modality coverage,
emotion shifts in dialogues, and the agent's tool use."""
from __future__ import annotations

from collections import Counter
from typing import Any

from mllm_mer.conversation.context import dialogues_of
from mllm_mer.conversation.shifts import pooled_shift_metrics
from mllm_mer.core.types import LabelScheme, Prediction
from mllm_mer.datasets import DatasetError
from mllm_mer.evaluation.metrics import classification_metrics, sentiment_regression_metrics
from mllm_mer.stages.calibration import arrays as calibration_arrays
from mllm_mer.stages.calibration import calibration_metrics


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


def agent_statistics(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Tool use over a run's agent traces, and the agreement of self-consistent votes."""
    predictions = [Prediction.from_dict(r["prediction"]) for r in records]
    traces = [p.trace for p in predictions if p.trace]
    votes = [p.consistency for p in predictions if p.consistency and p.consistency.get("agreement")]
    if not traces and not votes:
        return None
    found: dict[str, Any] = {}
    if traces:
        calls = Counter(step["tool"] for trace in traces for step in trace if step.get("tool"))
        steps = [len(trace) for trace in traces]
        found.update(samples_with_trace=len(traces), calls_per_tool=dict(calls),
                     mean_steps=sum(steps) / len(steps), steps_histogram=dict(sorted(Counter(steps).items())),
                     answered_without_tools=sum(len(t) == 1 for t in traces))
    if votes:
        tasks = sorted({task for v in votes for task in v["agreement"]})
        found["draws_per_sample"] = votes[0]["n"]
        found["mean_agreement"] = {t: sum(v["agreement"].get(t, 0.0) for v in votes) / len(votes) for t in tasks}
    return found


def compute_metrics(records: list[dict[str, Any]], spec: LabelScheme, dataset: str,
                    requested: tuple[str, ...] = ()) -> dict[str, Any]:
    """The field's metrics per task, failures by kind, the gold labels the metrics could not use,
    and how many samples brought each modality (with a warning for a requested one none had)."""
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
        gold, pred, outside, missing = [], [], 0, 0
        for record, prediction in zip(records, predictions, strict=True):
            raw_gold = record["gold"].get(ls.task)
            if raw_gold is None:
                missing += 1
                continue
            label = ls.normalise(str(raw_gold))
            if label is None:
                outside += 1
                continue
            gold.append(label)
            pred.append(prediction.label(ls.task) if prediction.ok else None)
        result["gold_issues"][ls.task] = {"outside_label_set": outside, "missing": missing}
        if gold:
            result["tasks"][ls.task] = classification_metrics(gold, pred, ls.labels)
            result["tasks"][ls.task]["gold_outside_label_set"] = outside
            result["tasks"][ls.task].update(calibration_metrics(*calibration_arrays(records, ls.task, ls.labels)))
    if dataset in ("mosi7", "mosei7"):
        labels = spec.task("sentiment").labels
        scores = [r.get("score") for r in records]
        predicted = [float(labels.index(p.label("sentiment")) - 3) if p.ok and p.label("sentiment") else None
                     for p in predictions]
        result["regression"] = sentiment_regression_metrics(scores, predicted)
    return result
