"""Batch prompting over a benchmark split: resumable, crash-safe, with the field's metrics.

The run directory holds `run.json` (the settings), `predictions.jsonl` (append-only,
flushed and fsynced per batch, one line per sample id), and after the run
`metrics.json`, `report.md` and `confusion.png`. Restarting the same command resumes
where the last complete batch ended: no sample is lost or answered twice.
"""
from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

from mllm_mer.config import EvaluateConfig
from mllm_mer.datasets import DatasetError, load_split
from mllm_mer.metrics import classification_metrics, sentiment_regression_metrics
from mllm_mer.types import LabelScheme, Prediction, PromptSetup, Sample

PREDICTIONS = "predictions.jsonl"


def fingerprint(cfg: EvaluateConfig, setup: PromptSetup) -> dict[str, Any]:
    """Settings that must not change between a run and its resumption (JSON-safe)."""
    data = cfg.data
    return {
        "dataset": data.dataset, "data_dir": str(Path(data.data_dir).resolve()), "split": cfg.run.split,
        "data": data.describe(), "labels": setup.scheme.name, "tasks": list(setup.scheme.tasks),
        "prompt": {"template": setup.template, "modalities": list(setup.modalities), "mode": setup.mode},
        "media": asdict(setup.media), "model": cfg.model.model, "backend": cfg.model.backend,
        "adapters": cfg.model.adapters, "probabilities": cfg.run.probabilities,
    }


# -- the append-only predictions file --------------------------------------------------------

def read_predictions(path: Path) -> dict[str, dict[str, Any]]:
    """Complete lines of a predictions file by sample id; a torn last line is cut off."""
    if not path.is_file():
        return {}
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):  # a write interrupted mid-line: drop the fragment
        with open(path, "r+b") as f:
            f.truncate(end)
    records = {}
    for number, line in enumerate(data[:end].decode("utf-8", errors="replace").splitlines(), 1):
        if line.strip():
            try:
                record = json.loads(line)
                records[record["id"]] = record
            except (json.JSONDecodeError, KeyError, TypeError):
                raise ValueError(f"{path}:{number}: not a prediction record; fix or delete that line, "
                                 "then rerun to resume") from None
    return records


def append_records(path: Path, records: list[dict[str, Any]]) -> None:
    payload = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, payload)
        os.fsync(fd)
    finally:
        os.close(fd)


def record_for(sample: Sample, prediction: Prediction) -> dict[str, Any]:
    return {"id": sample.id, "gold": sample.gold, "prediction": prediction.to_dict(),
            "score": sample.metadata.get("score")}


# -- the run -----------------------------------------------------------------------------------

def _check_run_dir(out: Path, fingerprint: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    run_file = out / "run.json"
    if run_file.is_file():
        previous = json.loads(run_file.read_text())
        if previous != json.loads(json.dumps(fingerprint)):
            changed = sorted(k for k in fingerprint if previous.get(k) != json.loads(json.dumps(fingerprint[k])))
            raise ValueError(f"{out} holds a run with other settings ({', '.join(changed)}); "
                             "use another --out, or delete it to start over")
    else:
        run_file.write_text(json.dumps(fingerprint, indent=2) + "\n")


def run_evaluation(cfg: EvaluateConfig, backend=None, progress: bool = True) -> dict[str, Any]:
    """Answer every pending sample of the split, then (re)compute the metrics and reports."""
    from tqdm import tqdm

    from mllm_mer.pipeline import predict
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
    setup = resolve_prompt(cfg.model, cfg.prompt, cfg.media, default_labels=split.labels)
    adapter = next(iter(cfg.model.adapters), None)
    out = Path(run.out)
    _check_run_dir(out, fingerprint(cfg, setup))
    path = out / PREDICTIONS
    done = read_predictions(path)
    pending = [s for s in samples if s.id not in done]

    started = time.perf_counter()
    if pending:
        own_backend = backend is None
        if own_backend:
            from mllm_mer.backends import load_backend

            backend = load_backend(cfg.backend)
        try:
            bar = tqdm(total=len(samples), initial=len(samples) - len(pending), unit="sample", disable=not progress,
                       desc=f"{split.name}", smoothing=0.1)
            for start in range(0, len(pending), run.batch_size):
                batch = pending[start:start + run.batch_size]
                preds = predict(backend, batch, setup, adapter=adapter,
                                with_probabilities=run.probabilities or setup.mode == "score")
                append_records(path, [record_for(s, p) for s, p in zip(batch, preds, strict=True)])
                bar.update(len(batch))
            bar.close()
        finally:
            if own_backend:
                backend.close()
    elapsed = time.perf_counter() - started

    records = read_predictions(path)
    wanted = [records[s.id] for s in samples if s.id in records]
    metrics = compute_metrics(wanted, setup.scheme, data.dataset)
    metrics["run"] = {"dataset": data.dataset, "split": run.split, "model": cfg.model.model,
                      "adapter": adapter, "template": setup.template, "mode": setup.mode,
                      "modalities": list(setup.modalities), "labels": setup.scheme.name,
                      "backend": cfg.model.backend}
    if pending:
        metrics["throughput_samples_per_s"] = len(pending) / elapsed if elapsed > 0 else None
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")

    from mllm_mer.report import plot_confusions, write_report

    plot_confusions(metrics, out / "confusion.png")
    write_report(metrics, out / "report.md")
    return metrics


def compute_metrics(records: list[dict[str, Any]], spec: LabelScheme, dataset: str) -> dict[str, Any]:
    """The field's metrics per task, failures by kind, and the gold labels the metrics could not use."""
    if not records:
        raise DatasetError("no predictions to score")
    predictions = [Prediction.from_dict(r["prediction"]) for r in records]
    failures = [{"id": p.sample_id, "error": p.error, "kind": p.error_kind or "parse"} for p in predictions if not p.ok]
    result: dict[str, Any] = {"n_samples": len(records), "n_failed": len(failures),
                              "failures_by_kind": dict(Counter(f["kind"] for f in failures)), "failures": failures,
                              "gold_issues": {}, "tasks": {}}
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
    if dataset in ("mosi7", "mosei7"):
        labels = spec.task("sentiment").labels
        scores = [r.get("score") for r in records]
        predicted = [float(labels.index(p.label("sentiment")) - 3) if p.ok and p.label("sentiment") else None
                     for p in predictions]
        result["regression"] = sentiment_regression_metrics(scores, predicted)
    return result
