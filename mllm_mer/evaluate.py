"""Batch prompting over a benchmark split: resumable, crash-safe, with the field's metrics.

The run directory holds `run.json` (the settings), `predictions.jsonl` (append-only,
fsynced as answers finish, one line per sample id, in the order they finished), and
after the run `metrics.json`, `report.md` and `confusion.png`. Restarting the same
command answers only the samples without a line: no sample is lost or answered twice.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from mllm_mer.calibration import arrays as calibration_arrays
from mllm_mer.calibration import calibration_metrics
from mllm_mer.config import EvaluateConfig
from mllm_mer.datasets import DatasetError, load_split
from mllm_mer.metrics import classification_metrics, sentiment_regression_metrics
from mllm_mer.run_records import PREDICTIONS, append_records, check_run_dir, read_predictions, record_for
from mllm_mer.types import LabelScheme, Prediction, PromptSetup

__all__ = ["compute_metrics", "fingerprint", "read_predictions", "record_for", "run_evaluation"]


def fingerprint(cfg: EvaluateConfig, setup: PromptSetup) -> dict[str, Any]:
    """Settings that must not change between a run and its resumption (JSON-safe)."""
    data = cfg.data
    return {
        "dataset": data.dataset, "data_dir": str(Path(data.data_dir).resolve()), "split": cfg.run.split,
        "data": data.describe(), "labels": setup.scheme.name, "tasks": list(setup.scheme.tasks),
        "prompt": {"template": setup.template, "modalities": list(setup.modalities), "mode": setup.mode},
        "media": {k: v for k, v in asdict(setup.media).items() if k != "media_cache_gb"},  # a cache: no identity
        "model": cfg.model.model, "backend": cfg.model.backend,
        "adapters": cfg.model.adapters, "probabilities": cfg.run.probabilities,
        "temperatures": setup.temperatures,
        "strategy": strategy_fingerprint(cfg, setup),
    }


def strategy_fingerprint(cfg: EvaluateConfig, setup: PromptSetup) -> dict[str, Any]:
    """The strategy's settings that change answers (defaults of unused options left out)."""
    found: dict[str, Any] = {"strategy": setup.strategy}
    if setup.strategy == "agent":
        found.update(max_steps=setup.max_steps, tools=list(setup.tools), look_frames=setup.look_frames)
    if setup.draws > 1:
        found.update(samples=setup.draws, temperature=setup.sampling_temperature)
    if setup.strategy == "fusion":
        found.update(fuser=setup.fuser, every_subset=setup.every_subset,
                     gate=str(Path(cfg.strategy.fusion).resolve()) if cfg.strategy.fusion else None)
    from mllm_mer.prompting import needs_demonstrations

    if needs_demonstrations(setup.template) or (setup.strategy == "agent" and "recall" in setup.tools):
        r = cfg.retrieval
        found["retrieval"] = {"split": r.retrieve_split, "dataset": r.retrieve_dataset or cfg.data.dataset,
                              "data_dir": str(Path(r.retrieve_data_dir or cfg.data.data_dir).resolve()),
                              "k": r.retrieve_k, "embedder": r.retrieve_embedder}
    return found


def run_evaluation(cfg: EvaluateConfig, backend=None, progress: bool = True,
                   media_roots: tuple[str, ...] = ()) -> dict[str, Any]:
    """Answer every pending sample of the split, then (re)compute the metrics and reports.

    `media_roots`: when given, media must lie inside these folders (the app's Batch tab)."""
    from tqdm import tqdm

    from mllm_mer.pipeline import answer_stream
    from mllm_mer.resolve import resolve_prompt

    data, run = cfg.data, cfg.run
    for name in ("dataset", "data_dir"):
        if not getattr(data, name):
            raise ValueError(f"evaluate needs --{name.replace('_', '-')}")
    if not run.out:
        raise ValueError("evaluate needs --out (the run directory)")
    if run.limit is not None and run.limit < 1:
        raise ValueError(f"--limit must be at least 1 (got {run.limit}); leave it out for the whole split")
    split = load_split(data.dataset, data.data_dir, run.split, **data.loader_options(cfg.prompt.labels))
    samples = list(split.samples[: run.limit] if run.limit else split.samples)
    split_size = len(split.samples)
    setup = resolve_prompt(cfg.model, cfg.prompt, cfg.media, default_labels=split.labels, strategy=cfg.strategy,
                           retrieval=cfg.retrieval)
    if media_roots:
        setup = replace(setup, media=replace(setup.media, allowed_roots=tuple(media_roots)))
    adapter = next(iter(cfg.model.adapters), None)
    out = Path(run.out)
    check_run_dir(out, fingerprint(cfg, setup), cfg)
    path = out / PREDICTIONS
    done = read_predictions(path)
    pending = [s for s in samples if s.id not in done]
    if cfg.scale.engine == "ray":
        check_ray_support(cfg, setup)
    toolbox = None
    if pending and cfg.scale.engine != "ray":
        from mllm_mer.agent.toolbox import build_toolbox

        toolbox = build_toolbox(setup, cfg.retrieval, data.dataset, data.data_dir, run.split, split.samples,
                                data.loader_options(cfg.prompt.labels))

    timing: dict[str, float] = {}
    if pending:
        on_ray = cfg.scale.engine == "ray"
        own_backend = backend is None and not on_ray
        if own_backend:
            from mllm_mer.backends import load_backend

            loading = time.perf_counter()
            backend = load_backend(cfg.backend)
            timing["engine_start_s"] = time.perf_counter() - loading
        started = time.perf_counter()  # throughput is over inference only, not the engine start
        try:
            bar = tqdm(total=len(samples), initial=len(samples) - len(pending), unit="sample", disable=not progress,
                       desc=f"{split.name}", smoothing=0)  # the average rate: what report.md states
            show = lambda stage: bar.set_postfix_str(stage, refresh=True)  # noqa: E731

            def save(records: list[dict[str, Any]]) -> None:
                append_records(path, records)
                bar.update(len(records))

            def write(batch, answered) -> None:
                save([record_for(s, a.prediction, a.prompt, setup.modalities) for s, a in zip(batch, answered,
                                                                                              strict=True)])

            context_labels = data.context_labels or "none"
            with_probabilities = run.probabilities or setup.mode == "score"
            if on_ray:
                from mllm_mer.ray_batch import answer_on_ray

                show(f"ray, {cfg.scale.replicas} replica(s)")
                for records in answer_on_ray(cfg.backend, pending, setup, adapter, with_probabilities, cfg.scale,
                                             run.batch_size):
                    timing.setdefault("first_answers_s", time.perf_counter() - started)  # includes actor start
                    save(records)
            elif context_labels == "none":
                # Media is decoded ahead while the backend works; each answer is saved as it finishes.
                for finished in answer_stream(backend, pending, setup, adapter, with_probabilities=with_probabilities,
                                              toolbox=toolbox, batch_size=run.batch_size,
                                              continuous=run.submission == "continuous", prefetch=run.prefetch,
                                              media_workers=run.media_workers, on_stage=show):
                    write(*map(list, zip(*finished, strict=True)))
            else:
                # In order, each turn's context labelled as asked; finished turns (a resumed run) keep theirs.
                from mllm_mer.dialogue import classify_dialogues, dialogues_of

                classify_dialogues(backend, dialogues_of(samples), setup, context_labels,
                                   5 if data.context_window is None else data.context_window, adapter,
                                   setup.scheme.label_sets[0].task,
                                   done={i: Prediction.from_dict(r["prediction"]) for i, r in done.items()},
                                   on_turn=write, toolbox=toolbox, batch_size=run.batch_size, on_stage=show)
            bar.close()
            timing["inference_s"] = time.perf_counter() - started
        finally:
            if own_backend:
                backend.close()

    records = read_predictions(path)
    wanted = [records[s.id] for s in samples if s.id in records]
    metrics = compute_metrics(wanted, setup.scheme, data.dataset, requested=setup.modalities)
    metrics["run"] = {"dataset": data.dataset, "split": run.split, "model": cfg.model.model,
                      "adapter": adapter, "template": setup.template, "mode": setup.mode,
                      "modalities": list(setup.modalities), "labels": setup.scheme.name,
                      "backend": cfg.model.backend, "labels_source": setup.scheme.source,
                      "calibrated": bool(setup.temperatures), "strategy": strategy_fingerprint(cfg, setup)}
    conversation = dialogue_metrics(samples, records, setup.scheme.label_sets[0].task)
    if conversation:
        conversation["context_labels"] = data.context_labels or "none"
        metrics["dialogue"] = conversation
    agent = agent_statistics(wanted)
    if agent:
        metrics["agent"] = agent
    metrics["coverage"] = {"answered": len(wanted), "of": split_size, "partial": len(wanted) < split_size}
    metrics["sample_set"] = hashlib.sha256("\n".join(sorted(s.id for s in samples)).encode()).hexdigest()[:16]
    if timing.get("inference_s"):
        metrics["throughput_samples_per_s"] = len(pending) / timing["inference_s"]
        metrics["timing"] = timing
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")

    from mllm_mer.report import plot_confusions, write_report

    plot_confusions(metrics, out / "confusion.png")
    from mllm_mer.calibration import plot_reliability

    if not plot_reliability(wanted, setup.scheme, out / "reliability.png"):
        (out / "reliability.png").unlink(missing_ok=True)
    write_report(metrics, out / "report.md")
    return metrics


def check_ray_support(cfg: EvaluateConfig, setup: PromptSetup) -> None:
    """What a Ray run cannot carry to its actors yet is refused up front, not mid-run."""
    from mllm_mer.prompting import needs_demonstrations

    if (data_context := cfg.data.context_labels) and data_context != "none":
        raise ValueError("--engine ray answers samples independently; --context-labels needs the local engine")
    if needs_demonstrations(setup.template) or (setup.strategy == "agent" and {"recall", "context"} & set(setup.tools)):
        raise ValueError("--engine ray does not carry a retrieval index or dialogue history to its actors yet: "
                         "use the local engine, or an agent without the recall and context tools")


def dialogue_metrics(samples: list, records: dict[str, dict[str, Any]], task: str) -> dict[str, Any] | None:
    """For dialogue datasets: emotion-shift detection (pooled over dialogues) and accuracy per speaker."""
    from mllm_mer.dialogue import dialogues_of, shift_metrics

    dialogues = [d for d in dialogues_of([s for s in samples if s.id in records]) if len(d) > 1]
    if not dialogues:
        return None
    counts = Counter()
    per_speaker: dict[str, list[bool]] = {}
    for turns in dialogues:
        gold = [s.gold.get(task) for s in turns]
        predicted = [Prediction.from_dict(records[s.id]["prediction"]).label(task) for s in turns]
        found = shift_metrics([s.speaker or "" for s in turns], gold, predicted)
        counts.update(tp=found["detected_shifts"], gold=found["gold_shifts"], predicted=found["predicted_shifts"])
        for s, g, p in zip(turns, gold, predicted, strict=True):
            per_speaker.setdefault(s.speaker or "", []).append(g is not None and g == p)
    precision = counts["tp"] / counts["predicted"] if counts["predicted"] else 0.0
    recall = counts["tp"] / counts["gold"] if counts["gold"] else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    top = sorted(per_speaker.items(), key=lambda item: -len(item[1]))[:10]
    return {"dialogues": len(dialogues), "shift_precision": precision, "shift_recall": recall, "shift_f1": f1,
            "gold_shifts": counts["gold"], "predicted_shifts": counts["predicted"],
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
