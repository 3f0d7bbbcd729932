"""Batch prompting over a benchmark split: resumable, crash-safe, with the field's metrics.

The run directory holds `run.json` (the settings), `predictions.jsonl` (append-only,
fsynced as answers finish, one line per sample id, in the order they finished), and
after the run `metrics.json`, `report.md` and `confusion.png`. Restarting the same
command answers only the samples without a line: no sample is lost or answered twice.

Three run modes answer the pending samples: streamed (media prepared ahead, each answer saved
as it finishes), in dialogue order (when earlier turns' labels feed the context) and on Ray.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mllm_mer.config import BackendConfig, EvaluateConfig, RunConfig, ScaleConfig
from mllm_mer.conversation.context import context_settings, dialogues_of
from mllm_mer.core.labels import check_list_answers
from mllm_mer.core.types import Prediction, Sample
from mllm_mer.datasets import Split, load_configured, loader_options
from mllm_mer.evaluation.faithfulness import faithfulness_statistics
from mllm_mer.evaluation.fingerprint import fingerprint, strategy_fingerprint
from mllm_mer.evaluation.orders import order_statistics
from mllm_mer.evaluation.records import (
    PREDICTIONS,
    append_records,
    check_run_dir,
    read_predictions,
    record_for,
    rewrite_records,
)
from mllm_mer.evaluation.statistics import compute_metrics, dialogue_metrics
from mllm_mer.pipeline.build import Run, Source, build_run, open_backend
from mllm_mer.pipeline.dialogue import classify_dialogues
from mllm_mer.pipeline.stream import answer_stream
from mllm_mer.strategies import RunContext
from mllm_mer.strategies.reporting import strategy_statistics

__all__ = ["compute_metrics", "dialogue_metrics", "fingerprint", "read_predictions", "record_for",
           "run_evaluation"]


@dataclass
class Plan:
    """A run made ready: its split, the samples asked for, those still to answer, and how (resolved once from
    the config, which the plan does not carry)."""

    split: Split
    samples: list[Sample]
    pending: list[Sample]
    run: RunContext
    out: Path
    done: dict[str, dict[str, Any]]
    options: RunConfig  # batch size, submission, prefetch, media workers
    scale: ScaleConfig  # local engine or Ray, and Ray's replicas
    about: dict[str, Any]  # what metrics.json says of the run (dataset, split, model, backend, strategy)
    built: Run  # `run`'s builder: answering adds the resources its pending samples read
    source: Source  # where the split comes from, for the demonstration index and dialogue history
    context_labels: str = "none"  # how earlier turns are labelled in the context ("none": samples stand alone)
    window: int = 0  # earlier turns in the context
    timing: dict[str, float] = field(default_factory=dict)
    retried: dict[str, int] = field(default_factory=dict)  # failure kind -> rows answered again


# Failures a rerun may fix (a server back up, a larger --max-new-tokens): such rows are answered again;
# a file that cannot be read, or a sample with nothing to classify, stays as it was.
RETRIED_KINDS = ("backend", "parse", "cut")


def retry_failed(done: dict[str, dict[str, Any]]) -> tuple[dict[str, dict[str, Any]], dict[str, int]]:
    """(the rows that stand, failure kind -> rows to answer again)."""
    retried: dict[str, int] = {}
    kept = {}
    for sample_id, record in done.items():
        prediction = record.get("prediction") or {}
        kind = prediction.get("error_kind")
        if not prediction.get("ok", True) and kind in RETRIED_KINDS:
            retried[kind] = retried.get(kind, 0) + 1
        else:
            kept[sample_id] = record
    return kept, retried


def plan_run(cfg: EvaluateConfig, media_roots: tuple[str, ...] = ()) -> Plan:
    """Check the flags, load the split, build the run and compare it with the run directory's; what the
    pending samples read is built when they are answered (`answer_pending`). The config is read here and
    nowhere after: the plan keeps what was resolved."""
    data, run = cfg.data, cfg.run
    for name in ("dataset", "data_dir"):
        if not getattr(data, name):
            raise ValueError(f"evaluate needs --{name.replace('_', '-')}")
    if not run.out:
        raise ValueError("evaluate needs --out (the run directory)")
    context_labels, window = context_settings(data)
    split = load_configured(data, run.split, cfg.prompt.labels, limit=run.limit)
    source = Source(data.dataset, data.data_dir, run.split, loader_options(data, cfg.prompt.labels))
    samples = list(split.samples[: run.limit] if run.limit else split.samples)
    built = build_run(cfg, default_labels=split.labels, probabilities=run.probabilities, media_roots=media_roots,
                      with_resources=False)
    check_list_answers(built.setup.scheme, run.probabilities, "--probabilities")
    if run.compare_orders and built.setup.reasoning is None:
        raise ValueError("--compare-orders sets the label-first answer beside a reasoned one: add --reasoning "
                         "before or native")
    built.context.compare_orders = run.compare_orders
    built.context.faithfulness = run.faithfulness
    out = Path(run.out)
    check_run_dir(out, fingerprint(cfg, built), cfg)
    about = {"dataset": data.dataset, "split": run.split, "model": cfg.model.model, "backend": cfg.model.backend,
             "strategy": strategy_fingerprint(cfg, built)}
    done, retried = retry_failed(read_predictions(out / PREDICTIONS))
    if retried:  # the failed rows leave the file; their new answers are appended as they finish
        rewrite_records(out / PREDICTIONS, list(done.values()))
    pending = [s for s in samples if s.id not in done]
    if cfg.scale.engine == "ray":
        check_ray_support(context_labels, built.needs)
    return Plan(split, samples, pending, built.context, out, done, run, cfg.scale, about, built, source,
                context_labels, window, retried=retried)


def run_evaluation(cfg: EvaluateConfig, backend=None, progress: bool = True,
                   media_roots: tuple[str, ...] = ()) -> dict[str, Any]:
    """Answer every pending sample of the split, then (re)compute the metrics and reports.

    `backend`: a loaded backend to answer on (None: the one the config names, loaded and closed here);
    `media_roots`: when given, media must lie inside these folders (the app's Batch tab)."""
    plan = plan_run(cfg, media_roots)
    if plan.pending:
        answer_pending(plan, backend, cfg.backend, progress)
    return write_results(plan)


def answer_pending(plan: Plan, backend, config: BackendConfig, progress: bool) -> None:
    """Build what the plan's pending samples read (the demonstration index, the dialogue history), then answer
    them by its run mode, saving as they finish, on `backend` (None: the backend `config` names; on Ray, each
    actor loads its own from `config`)."""
    from tqdm import tqdm

    def save(records: list[dict[str, Any]]) -> None:
        append_records(plan.out / PREDICTIONS, records)
        bar.update(len(records))

    if plan.scale.engine != "ray":  # Ray's actors read no resources (check_ray_support refused any need)
        plan.built.add_resources(plan.split.samples, plan.source)
    with _answering_on(plan, backend, config) as answering:
        mode = _on_ray if plan.scale.engine == "ray" else _streamed if plan.context_labels == "none" \
            else _in_dialogue_order
        started = time.perf_counter()  # throughput is over inference only, not the engine start
        bar = tqdm(total=len(plan.samples), initial=len(plan.samples) - len(plan.pending), unit="sample",
                   disable=not progress, desc=f"{plan.split.name}", smoothing=0)  # the average rate: report.md's
        plan.run.on_stage = lambda stage: bar.set_postfix_str(stage, refresh=True)
        mode(plan, answering, save, started)
        bar.close()
        plan.timing["inference_s"] = time.perf_counter() - started


@contextmanager
def _answering_on(plan: Plan, backend, config: BackendConfig) -> Iterator[Any]:
    """What the run mode answers on: on Ray the backend config (each actor loads its own), else the backend
    given, else the one the config names, loaded now and closed on exit."""
    if plan.scale.engine == "ray":
        yield config
    elif backend is not None:
        yield backend
    else:
        loading = time.perf_counter()
        with open_backend(config) as own:
            plan.timing["engine_start_s"] = time.perf_counter() - loading
            yield own


Save = Callable[[list[dict[str, Any]]], None]


def _records(plan: Plan, batch, answered) -> list[dict[str, Any]]:
    return [record_for(s, a.prediction, a.prompt, plan.run.setup.modalities)
            for s, a in zip(batch, answered, strict=True)]


def _streamed(plan: Plan, backend, save: Save, started: float) -> None:
    """Media decoded ahead while the backend works; each answer saved as it finishes."""
    run = plan.options
    for finished in answer_stream(backend, plan.pending, plan.run, batch_size=run.batch_size,
                                  continuous=run.submission == "continuous", prefetch=run.prefetch,
                                  media_workers=run.media_workers):
        save(_records(plan, *map(list, zip(*finished, strict=True))))


def _in_dialogue_order(plan: Plan, backend, save: Save, started: float) -> None:
    """In order, each turn's context labelled as asked; finished turns (a resumed run) keep theirs."""
    classify_dialogues(backend, dialogues_of(plan.samples), plan.run, plan.context_labels, plan.window,
                       plan.run.setup.scheme.label_sets[0].task,
                       done={i: Prediction.from_dict(r["prediction"]) for i, r in plan.done.items()},
                       on_turn=lambda batch, answered: save(_records(plan, batch, answered)),
                       batch_size=plan.options.batch_size, continuous=plan.options.submission == "continuous",
                       prefetch=plan.options.prefetch)


def _on_ray(plan: Plan, backend_config, save: Save, started: float) -> None:
    from mllm_mer.evaluation.ray_batch import answer_on_ray

    plan.run.on_stage(f"ray, {plan.scale.replicas} replica(s)")
    for records in answer_on_ray(backend_config, plan.pending, replace(plan.run, on_stage=_quiet), plan.scale,
                                 plan.options.batch_size):
        plan.timing.setdefault("first_answers_s", time.perf_counter() - started)  # includes actor start
        save(records)


def _quiet(stage: str) -> None:
    """Ray's actors report no progress (the bar counts their records)."""


def write_results(plan: Plan) -> dict[str, Any]:
    """metrics.json, report.md, confusion.png and reliability.png from every record of the run."""
    from mllm_mer.evaluation.report import plot_confusions, write_report
    from mllm_mer.stages.calibration import plot_reliability

    setup, about = plan.run.setup, plan.about
    records = read_predictions(plan.out / PREDICTIONS)
    wanted = [records[s.id] for s in plan.samples if s.id in records]
    metrics = compute_metrics(wanted, setup.scheme, about["dataset"], requested=setup.modalities,
                              groups=dialogue_groups(plan.samples), abstain_below=plan.options.abstain_below)
    metrics["run"] = {"dataset": about["dataset"], "split": about["split"], "model": about["model"],
                      "adapter": plan.run.adapter, "template": setup.template, "mode": setup.mode,
                      "modalities": list(setup.modalities), "labels": setup.scheme.name,
                      "backend": about["backend"], "labels_source": setup.scheme.source,
                      "calibrated": bool(setup.temperatures), "strategy": about["strategy"]}
    conversation = dialogue_metrics(plan.samples, records, setup.scheme.label_sets[0].task)
    if conversation:
        conversation["context_labels"] = plan.context_labels
        metrics["dialogue"] = conversation
    metrics.update(strategy_statistics(wanted))  # each strategy's entry, under its name
    if orders := order_statistics(wanted, setup.scheme):
        metrics["orders"] = orders
    if faithful := faithfulness_statistics(wanted, setup.scheme.label_sets[0].task):
        metrics["faithfulness"] = faithful
    metrics["coverage"] = {"answered": len(wanted), "of": len(plan.split.samples),
                           "partial": len(wanted) < len(plan.split.samples)}
    metrics["sample_set"] = hashlib.sha256("\n".join(sorted(s.id for s in plan.samples)).encode()).hexdigest()[:16]
    if plan.retried:
        metrics["retried"] = plan.retried
    if plan.timing.get("inference_s"):
        metrics["throughput_samples_per_s"] = len(plan.pending) / plan.timing["inference_s"]
        metrics["timing"] = plan.timing
    (plan.out / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")
    plot_confusions(metrics, plan.out / "confusion.png")
    if not plot_reliability(wanted, setup.scheme, plan.out / "reliability.png"):
        (plan.out / "reliability.png").unlink(missing_ok=True)
    write_report(metrics, plan.out / "report.md")
    return metrics


def dialogue_groups(samples: list[Sample]) -> dict[str, Any] | None:
    """Sample id -> dialogue, for intervals that resample whole dialogues (None: no dialogues)."""
    groups = {s.id: s.metadata.get("dialogue") for s in samples}
    return groups if any(g is not None for g in groups.values()) else None


def check_ray_support(context_labels: str, needs: frozenset[str]) -> None:
    """What a Ray run cannot carry to its actors yet is refused up front, not mid-run."""
    if context_labels != "none":
        raise ValueError("--engine ray answers samples independently; --context-labels needs the local engine")
    if needs:
        raise ValueError("--engine ray does not carry a retrieval index or dialogue history to its actors yet: "
                         "use the local engine, or an agent without the recall and context tools")
