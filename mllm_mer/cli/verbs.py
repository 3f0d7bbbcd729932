"""`mllm-mer VERB ...`: one command; each verb is a typed function of its config (mllm_mer.config).

Every verb takes its options as flags, as `--config FILE.yaml`, or as `key=value` words;
the flags are generated from the config tree (`mllm_mer.cli.args`).
"""
from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mllm_mer import config as C  # noqa: N812 (the config tree, read as C.EvaluateConfig)
from mllm_mer.cli.corpus import inspect_corpus, label_set_lines
from mllm_mer.core.labels import available as available_labels
from mllm_mer.core.paths import recipes
from mllm_mer.core.registry import DATASETS

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


@contextlib.contextmanager
def results_stdout():
    """Yield the real stdout for results; everything else (library logs, engine worker processes,
    which inherit file descriptor 1) goes to stderr meanwhile, so stdout stays machine-readable."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        with os.fdopen(os.dup(saved), "w") as out:
            yield out
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


# -- verbs -------------------------------------------------------------------------------------

def predict(cfg: C.PredictConfig) -> int:
    from mllm_mer.pipeline.answer import answer_prepared
    from mllm_mer.pipeline.build import build_run, open_backend
    from mllm_mer.stages.prepare import evidence_of, prepare, prompt_text

    sample = input_sample(cfg.input)  # a missing file fails here, before any model loads
    run = build_run(cfg, samples=[sample]).context
    with results_stdout() as out:
        [prepared] = prepare([sample], run.setup, resources=run.resources)  # media decoded before the model loads
        if cfg.input.show_evidence:
            print(json.dumps(evidence_of(prepared), ensure_ascii=False, indent=2), file=sys.stderr)
        if cfg.input.show_prompt:
            print(prompt_text(prepared), file=sys.stderr)
        with open_backend(cfg.backend) as backend:
            [answered] = answer_prepared(backend, [prepared], run)
        print(json.dumps(answered.prediction.to_dict(), ensure_ascii=False, indent=2), file=out, flush=True)
    return 0 if answered.prediction.ok else 1


def input_sample(given: C.PredictInput):
    """The one sample `predict` classifies, from its flags."""
    from mllm_mer.cli.inputs import check_predict_input
    from mllm_mer.conversation.context import read_context
    from mllm_mer.core.types import Sample

    for flag, path in (("--video", given.video), ("--audio", given.audio), ("--image", given.image),
                       ("--physio", given.physio), ("--context", given.context)):
        if path and not Path(path).is_file():
            if Path(path).exists():  # a folder, a FIFO or a device: say which
                from mllm_mer.media.decode import check_regular_file
                from mllm_mer.media.errors import MediaError

                try:
                    check_regular_file(path)
                except MediaError as error:
                    raise FileNotFoundError(f"{flag} {error}") from None
            raise FileNotFoundError(f"{flag} {path}: no such file")
    check_predict_input(given)  # no input at all, or a file in the wrong role: a usage error, before any model
    frames: tuple = ()
    if given.frames_dir:
        folder = Path(given.frames_dir)
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no such directory")
        frames = tuple(str(p) for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES)
        if not frames:
            raise FileNotFoundError(f"{folder}: no image files")
    return Sample(id=given.id, transcript=given.transcript, speaker=given.speaker,
                  context=read_context(given.context), video=given.video, audio=given.audio, image=given.image,
                  physio=given.physio, frames=frames)


def evaluate(cfg: C.EvaluateConfig) -> int:
    """Exit 0 when the run finished with answers; 3 when every sample failed (the run is kept)."""
    from mllm_mer.evaluation.report import summary
    from mllm_mer.evaluation.runner import run_evaluation

    with results_stdout() as out:
        metrics = run_evaluation(cfg)
        for task, m in metrics["tasks"].items():
            if "headline" in m:  # multi-label and open-vocabulary tasks have their own headline
                print(f"{task}: " + "  ".join(f"{k.replace('_', ' ')} {m[k]:.4f}" for k in m["headline"]), file=out)
                continue
            print(f"{task}: accuracy {m['accuracy']:.4f}  weighted F1 {m['weighted_f1']:.4f}  "
                  f"macro F1 {m['macro_f1']:.4f}  UAR {m['uar']:.4f}  "
                  f"failures {m['failure_rate']:.2%}", file=out)
        for line in summary(metrics):
            print(line, file=out)
        print(f"report: {Path(cfg.run.out) / 'report.md'}", file=out)
    if metrics["n_failed"] == metrics["n_samples"]:
        print(f"mllm-mer evaluate: every sample failed ({metrics['failures'][0]['error']} ...); "
              "see the report", file=sys.stderr)
        return 3
    return 0


def compare(cfg: C.CompareConfig) -> int:
    from mllm_mer.evaluation.comparison import compare_runs

    if cfg.judge.judge_model or cfg.compare.preference_pairs:  # pairwise preference by a judge
        from mllm_mer.evaluation.preference_runs import judge_preferences

        with results_stdout() as out:
            print(judge_preferences(cfg), file=out)
        return 0
    if not cfg.compare.runs:
        raise ValueError("compare needs at least one run directory")
    print(compare_runs(cfg.compare.runs, cfg.compare.mixed_judges))
    return 0


def score(cfg: C.ScoreConfig) -> int:
    """Score a predictions file (or rescore a run) against gold: the evaluate run's metrics, no model."""
    from mllm_mer.evaluation.report import headline_tables, summary
    from mllm_mer.evaluation.scored_run import score_predictions

    metrics = score_predictions(cfg)
    print("\n".join(headline_tables(metrics["tasks"])))
    for line in summary(metrics):
        print(line)
    print(f"report: {Path(cfg.score.out) / 'report.md'}")
    return 0


def finetune(cfg: C.TrainConfig) -> int:
    from mllm_mer.core.registry import TRAINING_CHECKS, TRAINING_METHODS, load_entry, lookup
    if check := TRAINING_CHECKS.get(cfg.optim.method):
        load_entry(check)(cfg)  # light: a recipe that cannot work is refused before the trainer's imports
    print(f"adapter: {load_entry(lookup(TRAINING_METHODS, cfg.optim.method, 'training method'))(cfg)}")
    return 0


def merge(cfg: C.MergeConfig) -> int:
    from mllm_mer.training.model import merge as merge_adapter

    adapters = list(cfg.model.adapters.values())
    if len(adapters) != 1 or not cfg.merge.out:
        raise ValueError("merge needs --model, one --adapter and --out")
    print(f"merged model: {merge_adapter(cfg.model.model, adapters[0], cfg.merge.out)}")
    return 0


def app(cfg: C.AppConfig) -> int:
    from mllm_mer.app import serve_app

    serve_app(cfg)
    return 0


def serve(cfg: C.ServeConfig, vllm_args: list[str]) -> int:
    from mllm_mer.serving.vllm_server import serve_forever

    if cfg.server.host not in ("127.0.0.1", "localhost", "::1") and not cfg.server.api_key:
        print(f"warning: serving on {cfg.server.host} without an API key: anyone who reaches it can use it",
              file=sys.stderr)
    return serve_forever(cfg, vllm_args)


# make-tiny's task options: option -> (module, builder, what it writes)
TINY_TASKS = {
    "task": ("mllm_mer.synthetic.tasks", "make_task", "colour x wording task"),
    "agent_task": ("mllm_mer.synthetic.tasks", "make_window_task", "hidden-window task (agent traces)"),
    "tone_task": ("mllm_mer.synthetic.tasks", "make_tone_task", "sine-or-square task (heard, not described)"),
    "parity_task": ("mllm_mer.synthetic.parity", "make_parity_task", "cue-parity task (reasoning targets)"),
    "physio_task": ("mllm_mer.synthetic.tasks", "make_physio_task", "calm-or-aroused task (signals only)"),
}


def make_tiny(cfg: C.MakeTinyConfig) -> int:
    from mllm_mer.synthetic.checkpoints import build_checkpoint as build_tiny

    tiny = cfg.tiny
    if not tiny.dir:
        raise ValueError("make-tiny needs the directory to write: mllm-mer make-tiny DIR")
    out = build_tiny(tiny.dir, arch=tiny.arch, size=tiny.size, seed=tiny.seed, thinking=tiny.thinking)
    print(f"wrote a random-weight {tiny.size} {tiny.arch}{' thinking' if tiny.thinking else ''} checkpoint to {out}")
    for option, (module, builder, what) in TINY_TASKS.items():
        if getattr(tiny, option):
            written = getattr(importlib.import_module(module), builder)(getattr(tiny, option))
            print(f"wrote the {what} to {written.parent}")
    if tiny.whisper:
        from mllm_mer.synthetic.tiny_whisper import make_tiny_whisper

        print(f"wrote a random-weight tiny Whisper to {make_tiny_whisper(Path(tiny.dir) / 'whisper')}")
    return 0


def demo(cfg: C.DemoConfig) -> int:
    """The main job on a fresh machine: a tiny model and a clip with sound (built once), one prediction."""
    from mllm_mer.cli.demo import DEMO_TRANSCRIPT, TINY_NOTE, clip_contents, demo_inputs
    from mllm_mer.core.families import DEFAULT_MODEL

    model, clip = demo_inputs(cfg.demo.dir)
    tiny = cfg.model.model == DEFAULT_MODEL  # no model asked for: the offline tiny one
    if tiny:
        cfg.model.model, cfg.model.dtype = str(model), "float32"
    print(f"demo clip: {clip} (transcript: {DEMO_TRANSCRIPT!r}); model: {cfg.model.model}", file=sys.stderr)
    print(f"the clip: {clip_contents(clip)}", file=sys.stderr)
    if tiny:
        print(TINY_NOTE, file=sys.stderr)
    if cfg.demo.app:
        cfg.ui.example_video, cfg.ui.example_transcript = str(clip), DEMO_TRANSCRIPT
        return app(C.AppConfig(**{f: getattr(cfg, f) for f in C.AppConfig.__dataclass_fields__}))
    given = C.PredictInput(id="demo", video=str(clip), transcript=DEMO_TRANSCRIPT, show_evidence=True)
    return predict(C.PredictConfig(**{f: getattr(cfg, f) for f in C.InferenceConfig.__dataclass_fields__},
                                   input=given))


def dialogue(cfg: C.DialogueConfig) -> int:
    """A conversation -> its per-speaker emotion timeline (timeline.jsonl / .png / .md)."""
    from tqdm import tqdm

    from mllm_mer.conversation.context import context_settings
    from mllm_mer.conversation.sources import conversation_samples
    from mllm_mer.conversation.timeline import recording_end, timeline_rows, write_timeline
    from mllm_mer.pipeline.build import build_run, open_backend
    from mllm_mer.pipeline.dialogue import classify_dialogues

    if not cfg.dialogue.out:
        raise ValueError("dialogue needs --out DIR")
    samples, default_labels = conversation_samples(cfg)
    run = build_run(cfg, samples=samples, default_labels=default_labels).context
    task = run.setup.scheme.label_sets[0].task
    context_labels, window = context_settings(cfg.data)
    with results_stdout() as out:
        with open_backend(cfg.backend) as backend, tqdm(total=len(samples), unit="utterance", desc="dialogue") as bar:
            [predictions] = classify_dialogues(backend, [samples], run, context_labels, window, task,
                                               on_turn=lambda batch, _: bar.update(len(batch)))
        write_timeline(timeline_rows(samples, predictions, task), Path(cfg.dialogue.out), task, context_labels,
                       recording_end(samples))
        failed = sum(not p.ok for p in predictions)
        print(f"{len(samples)} utterances ({failed} failed); timeline: {Path(cfg.dialogue.out) / 'timeline.md'}",
              file=out)
    return 0


def calibrate(cfg: C.CalibrateConfig) -> int:
    """Fit temperature scaling per task on a dev run's probabilities; print before/after ECE."""
    from mllm_mer.evaluation.records import finished_run
    from mllm_mer.stages.calibration import describe_fit, fit

    options = cfg.calibrate
    info, scheme, records = finished_run(options.run_dir, options.out, "calibrate", "calibration.json")
    if info.get("calibrated"):
        raise ValueError(f"{options.run_dir}: this run's probabilities are already calibrated; fit on an "
                         "uncalibrated run")
    calibration = fit(records, scheme, fitted_on=str(options.run_dir))
    Path(options.out).write_text(calibration.to_json())
    for line in describe_fit(records, calibration):
        print(line)
    print(f"wrote {options.out}")
    return 0


def fit_fusion(cfg: C.FitFusionConfig) -> int:
    """Fit the fusion gate on a dev run made with --strategy fusion; print its dev accuracy beside the experts'."""
    from mllm_mer.evaluation.records import finished_run
    from mllm_mer.strategies.fusion import experts_of, fit_gate
    from mllm_mer.strategies.fusion.ablation import fusion_rows

    options = cfg.fit
    _, scheme, records = finished_run(options.run_dir, options.out, "fit-fusion", "fusion.json")
    if not any(experts_of(r) for r in records):
        raise ValueError(f"{options.run_dir}: no expert distributions in this run; make it with --strategy fusion")
    gate = fit_gate(records, scheme, fitted_on=str(options.run_dir))
    gate.save(options.out)
    for line in fusion_rows(records, scheme, gate):
        print(line)
    print(f"wrote {options.out} (dev numbers: fitted on these rows)")
    return 0


def distill(cfg: C.DistillConfig) -> int:
    """A teacher answers a split; its labels, rationales and cues (and traces) become a training manifest."""
    from mllm_mer.training.distill import run_distill

    with results_stdout() as out:
        summary = run_distill(cfg)
        agreement = summary["agreement_with_gold"]
        print(f"{summary['kept']} of {summary['samples']} rows kept for training"
              + (f"; teacher agreement with gold {agreement:.2%}" if agreement is not None else "")
              + f"; rationalised {summary['rationalised_kept']}/{summary['rationalised_asked']}", file=out)
        print(f"manifest: {Path(cfg.run.out) / 'distilled.jsonl'}  report: {Path(cfg.run.out) / 'distill.md'}",
              file=out)
    return 0


def ablate(cfg: C.EvaluateConfig) -> int:
    """Every modality subset and every fuser over one split, each clip's media decoded once: ablation.md/.png."""
    from dataclasses import replace

    from mllm_mer.evaluation.records import run_records
    from mllm_mer.evaluation.runner import run_evaluation
    from mllm_mer.strategies.fusion import load_gate
    from mllm_mer.strategies.fusion.ablation import write_ablation

    cfg.strategy = replace(cfg.strategy, strategy="fusion", experts="all")
    with results_stdout() as out:
        run_evaluation(cfg)
        gate = load_gate(cfg.strategy.fusion) if cfg.strategy.fusion else None
        table = write_ablation(Path(cfg.run.out), *run_records(cfg.run.out), gate)
        print(table, file=out)
        print(f"ablation: {Path(cfg.run.out) / 'ablation.md'}", file=out)
    return 0


def _families() -> list[str]:
    from mllm_mer.core.families import FAMILIES

    return [f"{f.name} ({', '.join(f.model_types)})" for f in FAMILIES.values()]


def _templates() -> list[str]:
    from mllm_mer.prompting import available_templates

    return available_templates()


LISTINGS: dict[str, Callable[[], list[str]]] = {
    "datasets": lambda: list(DATASETS),
    "labels": lambda: available_labels(),
    "templates": _templates,
    "models": _families,
    "recipes": lambda: recipes(),
}


def list_bundled(cfg: C.ListConfig) -> int:
    """What ships with the package: datasets, label sets (one, with its aliases), templates, model families."""
    if cfg.list.name and cfg.list.what != "labels":
        raise ValueError(f"ls {cfg.list.what} takes no name (ls labels NAME shows one label set)")
    print("\n".join(label_set_lines(cfg.list.name) if cfg.list.name else LISTINGS[cfg.list.what]()))
    return 0


@dataclass(frozen=True)
class Verb:
    config: type
    run: Callable[..., int]
    help: str
    passthrough: bool = False  # unknown flags go to the wrapped program (vLLM's server)
    starts_engines: bool = False  # a watchdog stops whatever it started if it dies (process_guard)
    hidden: tuple[str, ...] = ()  # options of its config tree that do not apply to it: no flag


VERBS: dict[str, Verb] = {
    "predict": Verb(C.PredictConfig, predict, "classify one clip/image/utterance and print the Prediction as JSON",
                    starts_engines=True),
    "evaluate": Verb(C.EvaluateConfig, evaluate, "batch-prompt a benchmark split; resumable; metrics and report",
                     starts_engines=True),
    "compare": Verb(C.CompareConfig, compare, "finished runs side by side, with intervals and paired tests; with "
                                              "--judge-model, a judge ranks their descriptions pairwise"),
    "score": Verb(C.ScoreConfig, score, "score any system's predictions file (or rescore a run) against a dataset's "
                                        "gold: the metrics, intervals and report of an evaluate run"),
    "finetune": Verb(C.TrainConfig, finetune, "LoRA/QLoRA fine-tuning from a recipe (finetune/configs/*.yaml)"),
    "merge": Verb(C.MergeConfig, merge, "merge a LoRA adapter into the base weights"),
    "app": Verb(C.AppConfig, app, "the Gradio front end", starts_engines=True),
    "serve": Verb(C.ServeConfig, serve, "the OpenAI-compatible vLLM server with LoRA adapters "
                                        "(unknown flags are passed to vLLM's server)", passthrough=True,
                  starts_engines=True, hidden=("backend", "forward_batch_size")),
    "inspect": Verb(C.InspectConfig, inspect_corpus, "what a loader makes of a corpus, without a model: rows, "
                                                      "labels (and those outside the set), dialogues, media found, "
                                                      "the first samples as prompted"),
    "demo": Verb(C.DemoConfig, demo, "one prediction on a bundled clip with sound, offline (builds a tiny model "
                                     "once); --app opens the app on it", starts_engines=True),
    "make-tiny": Verb(C.MakeTinyConfig, make_tiny, "build a random-weight checkpoint of a real architecture, offline"),
    "dialogue": Verb(C.DialogueConfig, dialogue, "a conversation (recording + SRT/VTT/JSONL transcript) utterance "
                                                 "by utterance: a per-speaker emotion timeline", starts_engines=True),
    "calibrate": Verb(C.CalibrateConfig, calibrate, "fit temperature scaling on a dev run: mllm-mer calibrate RUN "
                                                    "--out calibration.json (then --calibration FILE)"),
    "fit-fusion": Verb(C.FitFusionConfig, fit_fusion, "fit the learned fusion gate on a dev run made with "
                                                      "--strategy fusion: mllm-mer fit-fusion RUN --out fusion.json"),
    "ablate": Verb(C.EvaluateConfig, ablate, "every modality subset and fuser over one split (media decoded once): "
                                             "ablation.md and ablation.png"),
    "distill": Verb(C.DistillConfig, distill, "a teacher labels and explains a split; writes a training manifest "
                                              "(dataset: distilled) and distill.md"),
    "ls": Verb(C.ListConfig, list_bundled, "list what is bundled: datasets | labels | templates | models | recipes"),
}
