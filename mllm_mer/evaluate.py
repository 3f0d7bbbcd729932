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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mllm_mer.config import BackendConfig, PromptConfig
from mllm_mer.datasets import DatasetError, load_split
from mllm_mer.labels import LabelSpec, load_label_spec
from mllm_mer.media import MediaSettings
from mllm_mer.metrics import classification_metrics, sentiment_regression_metrics
from mllm_mer.types import Prediction, Sample

PREDICTIONS = "predictions.jsonl"


@dataclass
class EvaluateConfig:
    dataset: str  # meld | iemocap | iemocap4 | mer2024 | ravdess | mosi | mosi7 | mosei | mosei7 | manifest
    data_dir: str  # release folder (a CSV/JSONL file for `manifest`)
    split: str
    out: str  # run directory
    limit: int | None = None  # first N samples of the split
    batch_size: int = 16  # samples per backend call and per fsync
    adapter: str | None = None  # name of one of backend.adapters
    probabilities: bool = False  # generate mode: also score label probabilities (one extra pass)
    dataset_options: dict[str, Any] = field(default_factory=dict)  # loader keywords (context, video_dir, ...)
    labels: str | None = None  # label set (default: the dataset's own)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    media: MediaSettings = field(default_factory=MediaSettings)
    backend: BackendConfig = field(default_factory=BackendConfig)

    def fingerprint(self) -> dict[str, Any]:
        """Settings that must not change between a run and its resumption."""
        return {
            "dataset": self.dataset, "data_dir": str(Path(self.data_dir).resolve()), "split": self.split,
            "dataset_options": self.dataset_options, "labels": self.labels, "adapter": self.adapter,
            "prompt": asdict(self.prompt) | {"labels": None}, "media": asdict(self.media),
            "model": self.backend.model, "adapters": self.backend.adapters, "probabilities": self.probabilities,
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
    for line in data[:end].decode("utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            records[record["id"]] = record
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

    split = load_split(cfg.dataset, cfg.data_dir, cfg.split, **cfg.dataset_options)
    samples = list(split.samples[: cfg.limit] if cfg.limit else split.samples)
    spec = load_label_spec(cfg.labels or split.labels)
    prompt_cfg = PromptConfig(**(asdict(cfg.prompt) | {"labels": spec.name}))
    out = Path(cfg.out)
    _check_run_dir(out, cfg.fingerprint())
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
            for start in range(0, len(pending), cfg.batch_size):
                batch = pending[start:start + cfg.batch_size]
                preds = predict(backend, batch, spec, prompt_cfg, cfg.media, adapter=cfg.adapter,
                                with_probabilities=cfg.probabilities or prompt_cfg.mode == "score")
                append_records(path, [record_for(s, p) for s, p in zip(batch, preds)])
                bar.update(len(batch))
            bar.close()
        finally:
            if own_backend:
                backend.close()
    elapsed = time.perf_counter() - started

    records = read_predictions(path)
    wanted = [records[s.id] for s in samples if s.id in records]
    metrics = compute_metrics(wanted, spec, cfg.dataset)
    metrics["run"] = {"dataset": cfg.dataset, "split": cfg.split, "model": cfg.backend.model,
                      "adapter": cfg.adapter, "template": prompt_cfg.template, "mode": prompt_cfg.mode,
                      "modalities": list(prompt_cfg.modalities), "labels": spec.name, "backend": cfg.backend.backend}
    if pending:
        metrics["throughput_samples_per_s"] = len(pending) / elapsed if elapsed > 0 else None
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")

    from mllm_mer.report import plot_confusions, write_report

    plot_confusions(metrics, out / "confusion.png")
    write_report(metrics, out / "report.md")
    return metrics


def compute_metrics(records: list[dict[str, Any]], spec: LabelSpec, dataset: str) -> dict[str, Any]:
    if not records:
        raise DatasetError("no predictions to score")
    predictions = [Prediction.from_dict(r["prediction"]) for r in records]
    failures = [{"id": p.sample_id, "error": p.error} for p in predictions if not p.ok]
    result: dict[str, Any] = {"n_samples": len(records), "n_failed": len(failures), "failures": failures,
                              "tasks": {}}
    for ls in spec.label_sets:
        gold, pred, outside = [], [], 0
        for record, prediction in zip(records, predictions):
            raw_gold = record["gold"].get(ls.task)
            if raw_gold is None:
                continue
            label = ls.normalise(str(raw_gold))
            if label is None:
                outside += 1
                continue
            gold.append(label)
            pred.append(prediction.label(ls.task) if prediction.ok else None)
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
