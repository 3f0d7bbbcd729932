"""The run directory of `mllm-mer score`: run.json (what was scored, how), predictions.jsonl, metrics.json,
report.md, confusion.png and (with probabilities) reliability.png, as an `evaluate` run writes them."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from mllm_mer.evaluation.described import judge_for, reference_section, synonym_section, words_of
from mllm_mer.evaluation.records import PREDICTIONS, provenance
from mllm_mer.evaluation.scoring import Source, load_source, records_of
from mllm_mer.evaluation.statistics import compute_metrics


def check_out(out: Path, predictions: Path) -> None:
    """A scored run may replace an earlier scored run, never an evaluate run (nor the run it rescores)."""
    if out.resolve() == predictions.resolve():
        raise ValueError(f"--out {out}: write the rescored run to another directory than the run it reads")
    run_file = out / "run.json"
    if run_file.is_file():
        saved = json.loads(run_file.read_text())
        if (saved.get("fingerprint") or {}).get("verb") != "score":
            raise ValueError(f"{out} holds an evaluate run; score into another --out")


def summary_lines(source: Source, scored: int, outside: dict[str, int], missing: str, ls) -> list[str]:
    facts = source.facts
    absent = len(source.absent)
    lines = [f"scored {scored} of {source.total} samples of {source.name}"
             + (f" ({absent} without a prediction: {'counted wrong' if missing == 'wrong' else 'not scored'})"
                if absent else "")]
    if facts.get("unmatched_predictions"):
        lines.append(f"{facts['unmatched_predictions']} prediction ids matched no sample (e.g. "
                     + ", ".join(facts["unmatched_examples"][:3]) + ")")
    if outside:
        how = "words outside the vocabulary, matched by name only" if ls.open else \
            "predictions outside the label set, scored as wrong"
        lines.append(f"{ls.task}: {sum(outside.values())} {how} ("
                     + ", ".join(f"{k} {n}" for k, n in list(outside.items())[:10]) + ")")
    return lines


def run_info(cfg, source: Source, scheme) -> dict[str, Any]:
    given = source.run
    return {**given, "dataset": cfg.data.dataset or given.get("dataset"), "split": cfg.score.split or
            given.get("split"), "model": given.get("model") or f"predictions {Path(cfg.score.predictions).name}",
            "backend": given.get("backend", "-"), "template": given.get("template", "-"),
            "mode": "rescored" if given else "scored", "modalities": given.get("modalities", []),
            "labels": scheme.name, "labels_source": scheme.source}


def score_predictions(cfg) -> dict[str, Any]:
    """Score the predictions cfg names and write the run directory; returns metrics.json's content."""
    from mllm_mer.evaluation.report import plot_confusions, write_report
    from mllm_mer.stages.calibration import plot_reliability

    options = cfg.score
    source, scheme, ls = load_source(cfg)
    out = Path(options.out)
    check_out(out, Path(options.predictions))
    if options.pred_text_col and not ls.open:
        raise ValueError(f"--pred-text-col scores descriptions as open-vocabulary answers: add --labels open (label "
                         f"set {scheme.name!r} is closed; gold labels are then read as words, with a hit rate)")
    with judge_for(cfg.judge, options, out) as judge:
        texts = [e.value for e in source.entries]  # the descriptions, before their words are taken out
        if options.pred_text_col:
            for entry, words in zip(source.entries, words_of([e.value for e in source.entries], options.extract,
                                                             judge), strict=True):
                entry.value = words
        records, outside = records_of(source, ls, options.missing)
        groups = {r["id"]: r.get("dialogue") for r in records}
        metrics = compute_metrics(records, scheme, cfg.data.dataset or "", abstain_below=options.abstain_below,
                                  groups=groups if any(g is not None for g in groups.values()) else None)
        judged = synonym_section(records, ls, options, judge)
        rated = reference_section([e.id for e in source.entries], texts, [e.reference for e in source.entries],
                                  judge) if options.reference_col else None
    if judged is not None and ls.task in metrics["tasks"]:
        metrics["tasks"][ls.task]["synonym_groups"] = judged
    if rated is not None:
        metrics["against_reference"] = rated
    mapping = {"pred_id_col": options.pred_id_col, "pred_col": options.pred_text_col or options.pred_col,
               "prob_col": options.prob_col, "task": ls.task, "labels": scheme.name,
               "label_map": list(options.label_map), "missing": options.missing,
               **({"extract": options.extract} if options.pred_text_col else {}),
               **({"synonym_groups": options.synonym_groups} if options.synonym_groups else {})}
    if judge is not None:  # who judged, and how many verdicts this scoring asked (0: all from the cache)
        metrics["judge"] = {**judge.identity, "verdicts_asked": judge.calls}
        mapping["judge"] = judge.identity["id"]
    metrics["scored"] = {**source.facts, "mapping": mapping, "predictions_outside_label_set": dict(outside),
                         "samples_without_prediction": len(source.absent),
                         "summary": summary_lines(source, len(source.entries), dict(outside), options.missing, ls)}
    metrics["run"] = run_info(cfg, source, scheme)
    scored = len(records)
    metrics["coverage"] = {"answered": scored, "of": source.total, "partial": scored < source.total}
    metrics["sample_set"] = hashlib.sha256("\n".join(sorted(r["id"] for r in records)).encode()).hexdigest()[:16]
    out.mkdir(parents=True, exist_ok=True)
    fingerprint = {"verb": "score", "sha256": source.facts["sha256"], **mapping,
                   "dataset": cfg.data.dataset, "split": options.split}
    (out / "run.json").write_text(json.dumps({"fingerprint": fingerprint, "provenance": provenance(cfg)}, indent=2,
                                             default=str) + "\n")
    (out / PREDICTIONS).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")
    plot_confusions(metrics, out / "confusion.png")
    if not plot_reliability(records, scheme, out / "reliability.png"):
        (out / "reliability.png").unlink(missing_ok=True)
    write_report(metrics, out / "report.md")
    return metrics
