"""Rationale distillation: a teacher labels and explains a split; the answers become a student's training data.

The teacher is any model this project runs (any backend, any strategy: an agent's traces come
along). Its pass is an `evaluate` run (`OUT/teacher/`: resumable, crash-safe, with metrics against
gold). With `--filter rationalise` (STaR), each row the teacher got wrong is asked again with the gold
label given as a hint (`OUT/rationalised.jsonl`, resumable too); the hinted answer is kept only when its
label is the gold one, and the row is flagged. A teacher run with `--reasoning before|native` keeps each
answer's reasoning text in the manifest's `reasoning` column, the target of SFT's `reasoning_col`. Then
`OUT/distilled.jsonl` (the training manifest, read by `dataset: distilled`), `OUT/labels.yaml` and
`OUT/distill.md` (the quality report) are written.
"""
from __future__ import annotations

import contextlib
import json
import shutil
import statistics
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from mllm_mer.core.types import Prediction, Sample
from mllm_mer.datasets import load_configured
from mllm_mer.evaluation.records import append_records, read_predictions, record_for

FILTERS = ("agree", "rationalise", "all")


def run_distill(cfg, backend=None, progress: bool = True) -> dict[str, Any]:
    """Teacher pass, rationalisation, manifest and report; `backend`: one already loaded (else the config's)."""
    from mllm_mer.core.labels import load_label_scheme
    from mllm_mer.evaluation.runner import run_evaluation

    options, data = cfg.distill, cfg.data
    if options.filter not in FILTERS:
        raise ValueError(f"--filter must be one of {', '.join(FILTERS)}, not {options.filter!r}")
    if not cfg.run.out:
        raise ValueError("distill needs --out DIR")
    out = Path(cfg.run.out)
    teacher_cfg = replace(cfg, run=replace(cfg.run, out=str(out / "teacher"), probabilities=True))
    metrics = run_evaluation(teacher_cfg, backend=backend, progress=progress)
    info = metrics["run"]
    scheme = load_label_scheme(info.get("labels_source") or info["labels"])
    split = load_configured(data, cfg.run.split, cfg.prompt.labels)
    samples = list(split.samples[: cfg.run.limit] if cfg.run.limit else split.samples)
    teacher = read_predictions(out / "teacher" / "predictions.jsonl")

    rationalised: dict[str, dict[str, Any]] = {}
    if options.filter == "rationalise":
        rationalised = _rationalise(cfg, samples, teacher, scheme, out / "rationalised.jsonl", backend)

    provenance = {"teacher": cfg.model.model, "adapter": info.get("adapter"), "backend": cfg.model.backend,
                  "template": info.get("template"), "strategy": (info.get("strategy") or {}).get("strategy"),
                  "written": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    rows, kept = _kept_rows(samples, teacher, rationalised, scheme, options.filter, provenance)
    if options.dev_split:
        dev = load_configured(data, options.dev_split, cfg.prompt.labels)
        for sample in dev.samples:  # for checkpoint selection only: gold labels, never trained on
            if all(sample.gold.get(ls.task) is not None for ls in scheme.label_sets):
                gold = {ls.task: ls.normalise(str(sample.gold[ls.task])) for ls in scheme.label_sets}
                rows.append(_row(sample, Prediction(sample.id, tasks={}), "dev", "gold", provenance, None,
                                 labels=gold))
    (out / "distilled.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    if scheme.source:
        shutil.copyfile(scheme.source, out / "labels.yaml")
    else:
        from mllm_mer.core.paths import PROMPTS_DIR

        shutil.copyfile(PROMPTS_DIR / "labels" / f"{scheme.name}.yaml", out / "labels.yaml")
    summary = _report(rows, samples, teacher, rationalised, kept, scheme, options.filter, out / "distill.md",
                      provenance)
    return summary


def _kept_rows(samples, teacher, rationalised, scheme, filter_: str, provenance: dict[str, Any]
               ) -> tuple[list[dict[str, Any]], Counter]:
    """The training rows the filter keeps (teacher answers, or hinted ones that reach gold), and the counts."""
    rows, kept = [], Counter()
    for sample in samples:
        record = teacher.get(sample.id)
        if record is None or not record["prediction"]["ok"]:
            kept["failed"] += 1
            continue
        prediction = Prediction.from_dict(record["prediction"])
        agrees = _agrees(prediction, sample, scheme)
        hinted = rationalised.get(sample.id)
        if agrees is False and filter_ == "rationalise":
            if hinted is None or not hinted["kept"]:
                kept["dropped"] += 1
                continue
            prediction, source = Prediction.from_dict(hinted["prediction"]), "rationalised"
        elif agrees is False and filter_ == "agree":
            kept["dropped"] += 1
            continue
        else:
            source = "teacher" if agrees is not False else "teacher (disagrees with gold)"
        kept[source] += 1
        rows.append(_row(sample, prediction, "train", source, provenance, agrees))
    return rows, kept


def _agrees(prediction: Prediction, sample: Sample, scheme) -> bool | None:
    """Whether the teacher's labels are the gold ones (None: no gold to compare with)."""
    verdicts = []
    for ls in scheme.label_sets:
        gold = sample.gold.get(ls.task)
        if gold is None:
            continue
        verdicts.append(prediction.label(ls.task) == ls.normalise(str(gold)))
    return all(verdicts) if verdicts else None


def _rationalise(cfg, samples, teacher, scheme, path: Path, backend=None) -> dict[str, dict[str, Any]]:
    """Rows the teacher got wrong, asked again with the gold labels as a hint (resumable)."""
    from mllm_mer.pipeline.answer import answer
    from mllm_mer.pipeline.build import chosen_adapter, open_backend, prompt_setup

    wrong = [s for s in samples if s.id in teacher and teacher[s.id]["prediction"]["ok"]
             and _agrees(Prediction.from_dict(teacher[s.id]["prediction"]), s, scheme) is False]
    done = read_predictions(path)
    pending = [s for s in wrong if s.id not in done]
    if pending:
        setup = prompt_setup(cfg, default_labels=scheme.source or scheme.name)
        with contextlib.nullcontext(backend) if backend is not None else open_backend(cfg.backend) as backend:
            for start in range(0, len(pending), cfg.run.batch_size):
                batch = pending[start:start + cfg.run.batch_size]
                hinted = [replace(s, metadata={**s.metadata, "hint": {ls.task: ls.normalise(str(s.gold[ls.task]))
                                                                      for ls in scheme.label_sets
                                                                      if s.gold.get(ls.task) is not None}})
                          for s in batch]
                answered = answer(backend, hinted, setup, adapter=chosen_adapter(cfg.model))
                records = []
                for sample, a in zip(batch, answered, strict=True):
                    record = record_for(sample, a.prediction, a.prompt, setup.modalities)
                    record["kept"] = bool(a.prediction.ok and _agrees(a.prediction, sample, scheme))
                    records.append(record)
                append_records(path, records)
    return read_predictions(path)


def _row(sample: Sample, prediction: Prediction, split: str, source: str, provenance: dict[str, Any],
         agrees: bool | None, labels: dict[str, str] | None = None) -> dict[str, Any]:
    labels = labels or {t: tp.label for t, tp in prediction.tasks.items()}
    first = next(iter(prediction.tasks.values()), None)
    confidence = (first.probabilities or {}).get(first.label) if first and first.probabilities else None
    return {"id": sample.id, "split": split, "text": sample.transcript, "speaker": sample.speaker,
            "context": [{"speaker": t.speaker, "text": t.text} for t in sample.context], "video": sample.video,
            "audio": sample.audio, "physio": sample.physio, "start": sample.start, "end": sample.end,
            **({"physio_part": sample.metadata["physio_part"]} if "physio_part" in sample.metadata else {}),
            **({"physio_baseline": sample.metadata["physio_baseline"]} if "physio_baseline" in sample.metadata else {}),
            "dialogue": sample.metadata.get("dialogue"), "labels": labels, "rationale": prediction.rationale,
            "cues": prediction.cues, "trace": prediction.extra("agent").get("trace"),
            "reasoning": (prediction.reasoning or {}).get("text"),  # the teacher's own thought, when it reasoned
            "probabilities": {t: tp.probabilities for t, tp in prediction.tasks.items()}, "confidence": confidence,
            "source": source, "rationalised": source == "rationalised", "agrees_with_gold": agrees,
            "provenance": provenance}


def _report(rows, samples, teacher, rationalised, kept, scheme, filter_: str, path: Path,
            provenance: dict[str, Any]) -> dict[str, Any]:
    from mllm_mer.core.types import CUE_MODALITIES

    trained = [r for r in rows if r["split"] == "train"]
    verdicts = [_agrees(Prediction.from_dict(teacher[s.id]["prediction"]), s, scheme) for s in samples
                if s.id in teacher and teacher[s.id]["prediction"]["ok"]]
    judged = [v for v in verdicts if v is not None]
    lengths = [len(r["rationale"] or "") for r in trained]
    cited = {m: sum(bool((r["cues"] or {}).get(m)) for r in trained) for m in CUE_MODALITIES}
    summary = {"samples": len(samples), "teacher_answered": len(verdicts),
               "agreement_with_gold": sum(judged) / len(judged) if judged else None, "kept": len(trained),
               "kept_by_source": dict(kept), "rationalised_asked": len(rationalised),
               "rationalised_kept": sum(bool(r.get("kept")) for r in rationalised.values()),
               "rationale_chars": {"median": statistics.median(lengths) if lengths else 0,
                                   "max": max(lengths, default=0)},
               "cites": {m: n / len(trained) if trained else 0.0 for m, n in cited.items()}, "filter": filter_,
               "with_reasoning": sum(bool(r.get("reasoning")) for r in trained)}
    lines = ["# Distillation", "", f"teacher `{provenance['teacher']}`" +
             (f", adapter `{provenance['adapter']}`" if provenance.get("adapter") else "") +
             f", template `{provenance['template']}`, strategy {provenance['strategy']}, filter {filter_}", "",
             f"- samples: {summary['samples']}, answered by the teacher: {summary['teacher_answered']}",
             "- agreement with gold: " + (f"{summary['agreement_with_gold']:.2%}" if judged else "no gold labels"),
             f"- kept for training: {summary['kept']} ({', '.join(f'{k} {v}' for k, v in kept.items())})",
             f"- rationalised (asked again with the gold label as a hint): {summary['rationalised_asked']} asked, "
             f"{summary['rationalised_kept']} kept",
             f"- rationale length (characters): median {summary['rationale_chars']['median']}, "
             f"max {summary['rationale_chars']['max']}",
             "- rationales citing each modality: " + ", ".join(f"{m} {v:.0%}" for m, v in summary["cites"].items()),
             f"- rows with the teacher's reasoning (column `reasoning`, for `reasoning_col: reasoning`): "
             f"{summary['with_reasoning']}",
             "", "## Examples", ""]
    for r in trained[:5]:
        lines.append(f"- `{r['id']}` ({r['source']}): {r['labels']}; {r['rationale'] or '(no rationale)'}")
    path.write_text("\n".join(lines) + "\n")
    (path.parent / "distill.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
