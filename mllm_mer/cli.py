"""`mllm-mer VERB ...`: one command; each verb is a typed function of its config (mllm_mer.config).

Every verb takes its options as flags, as `--config FILE.yaml`, or as `key=value` words;
the flags are generated from the config tree (`mllm_mer.cli_args`).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mllm_mer import config as C  # noqa: N812 (the config tree, read as C.EvaluateConfig)
from mllm_mer.cli_args import add_config_arguments, config_from_namespace, reject_unknown, split_overrides

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


def read_context(path: str | None):
    """Earlier turns from a JSONL file: {speaker, text, emotion?} per line."""
    from mllm_mer.types import Turn

    if not path:
        return ()
    turns = []
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{path}: no such context file")
    for number, line in enumerate(file.read_bytes().splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError:
            raise ValueError(f"{path}:{number}: not UTF-8 text (save the file as UTF-8)") from None
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{number}: not a JSON line ({error})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}:{number}: expected an object with speaker and text")
        turns.append(Turn(speaker=str(data.get("speaker", "")), text=str(data.get("text", "")),
                          emotion=data.get("emotion")))
    return tuple(turns)


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
    from mllm_mer.agent.toolbox import build_toolbox
    from mllm_mer.backends import load_backend
    from mllm_mer.pipeline import predict as run_predict
    from mllm_mer.resolve import resolve_prompt
    from mllm_mer.types import Sample

    given = cfg.input
    frames: tuple = ()
    if given.frames_dir:
        folder = Path(given.frames_dir)
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no such directory")
        frames = tuple(str(p) for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES)
        if not frames:
            raise FileNotFoundError(f"{folder}: no image files")
    sample = Sample(id=given.id, transcript=given.transcript, speaker=given.speaker,
                    context=read_context(given.context), video=given.video, audio=given.audio, image=given.image,
                    frames=frames)
    setup = resolve_prompt(cfg.model, cfg.prompt, cfg.media, strategy=cfg.strategy, retrieval=cfg.retrieval)
    toolbox = build_toolbox(setup, cfg.retrieval, samples=[sample])
    with results_stdout() as out:
        backend = load_backend(cfg.backend)
        try:
            [prediction] = run_predict(backend, [sample], setup, adapter=next(iter(cfg.model.adapters), None),
                                       toolbox=toolbox)
        finally:
            backend.close()
        print(json.dumps(prediction.to_dict(), ensure_ascii=False, indent=2), file=out, flush=True)
    return 0 if prediction.ok else 1


def evaluate(cfg: C.EvaluateConfig) -> int:
    """Exit 0 when the run finished with answers; 3 when every sample failed (the run is kept)."""
    from mllm_mer.evaluate import run_evaluation
    from mllm_mer.report import summary

    with results_stdout() as out:
        metrics = run_evaluation(cfg)
        for task, m in metrics["tasks"].items():
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
    from mllm_mer.report import compare_runs

    if not cfg.compare.runs:
        raise ValueError("compare needs at least one run directory")
    print(compare_runs(cfg.compare.runs))
    return 0


def finetune(cfg: C.TrainConfig) -> int:
    from mllm_mer.training import train

    print(f"adapter: {train(cfg)}")
    return 0


def merge(cfg: C.MergeConfig) -> int:
    from mllm_mer.training import merge as merge_adapter

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
    from mllm_mer.vllm_server import serve_forever

    if cfg.server.host not in ("127.0.0.1", "localhost", "::1") and not cfg.server.api_key:
        print(f"warning: serving on {cfg.server.host} without an API key: anyone who reaches it can use it",
              file=sys.stderr)
    return serve_forever(cfg, vllm_args)


def make_tiny(cfg: C.MakeTinyConfig) -> int:
    from mllm_mer.tiny import make_tiny as build_tiny

    tiny = cfg.tiny
    if not tiny.dir:
        raise ValueError("make-tiny needs the directory to write: mllm-mer make-tiny DIR")
    out = build_tiny(tiny.dir, arch=tiny.arch, size=tiny.size, seed=tiny.seed)
    print(f"wrote a random-weight {tiny.size} {tiny.arch} checkpoint to {out}")
    if tiny.task:
        from mllm_mer.synthetic import make_task

        print(f"wrote the colour x wording task to {make_task(tiny.task).parent}")
    if tiny.agent_task:
        from mllm_mer.synthetic import make_window_task

        print(f"wrote the hidden-window task (agent traces) to {make_window_task(tiny.agent_task).parent}")
    if tiny.whisper:
        from mllm_mer.tiny_whisper import make_tiny_whisper

        print(f"wrote a random-weight tiny Whisper to {make_tiny_whisper(Path(tiny.dir) / 'whisper')}")
    return 0


def dialogue(cfg: C.DialogueConfig) -> int:
    """A conversation -> its per-speaker emotion timeline (timeline.jsonl / .png / .md)."""
    from mllm_mer.agent.toolbox import build_toolbox
    from mllm_mer.backends import load_backend
    from mllm_mer.dialogue import classify_dialogues, timeline_rows, write_timeline
    from mllm_mer.resolve import resolve_prompt

    options, data = cfg.dialogue, cfg.data
    if not options.out:
        raise ValueError("dialogue needs --out DIR")
    samples, default_labels = conversation_samples(cfg)
    setup = resolve_prompt(cfg.model, cfg.prompt, cfg.media, default_labels=default_labels, strategy=cfg.strategy,
                           retrieval=cfg.retrieval)
    toolbox = build_toolbox(setup, cfg.retrieval, samples=samples)
    task = setup.scheme.label_sets[0].task
    context_labels = data.context_labels or "predicted"
    with results_stdout() as out:
        backend = load_backend(cfg.backend)
        try:
            [predictions] = classify_dialogues(backend, [samples], setup, context_labels,
                                               5 if data.context_window is None else data.context_window,
                                               next(iter(cfg.model.adapters), None), task, toolbox=toolbox)
        finally:
            backend.close()
        write_timeline(timeline_rows(samples, predictions, task), Path(options.out), task, context_labels)
        failed = sum(not p.ok for p in predictions)
        print(f"{len(samples)} utterances ({failed} failed); timeline: {Path(options.out) / 'timeline.md'}", file=out)
    return 0


def conversation_samples(cfg: C.DialogueConfig):
    """The utterances of the conversation asked for (a recording + transcript, or a dataset's dialogue), and
    the label set they come with (None: the default)."""
    from mllm_mer.dialogue import read_transcript, utterance_samples

    options, data = cfg.dialogue, cfg.data
    if data.dataset:
        from mllm_mer.datasets import DatasetError, load_split

        if options.dialogue is None or not data.data_dir:
            raise ValueError("dialogue --dataset needs --data-dir, --split and --dialogue ID")
        split = load_split(data.dataset, data.data_dir, options.split, **data.loader_options(cfg.prompt.labels))
        samples = [s for s in split.samples if str(s.metadata.get("dialogue")) == str(options.dialogue)]
        if not samples:
            raise DatasetError(f"{split.name} has no dialogue {options.dialogue!r}")
        return samples, split.labels
    if options.transcript:
        return utterance_samples(read_transcript(options.transcript), options.video, options.audio), None
    if cfg.media.asr_model and (options.video or options.audio):
        from mllm_mer.dialogue import asr_utterances

        utterances = asr_utterances(options.audio or options.video, cfg.media.asr_model)
        return utterance_samples(utterances, options.video, options.audio), None
    raise ValueError("dialogue needs --transcript FILE (.srt/.vtt/.jsonl), or --asr-model with the recording, "
                     "or --dataset/--split/--dialogue")


def finished_run(run_dir: str | None, out: str | None, verb: str, what: str):
    """(run info, label scheme, records) of a finished evaluate run to fit on."""
    from mllm_mer.labels import load_label_scheme
    from mllm_mer.run_records import read_predictions

    if not run_dir or not out:
        raise ValueError(f"{verb} needs a run directory and --out: mllm-mer {verb} RUN --out {what}")
    run = Path(run_dir)
    metrics_file = run / "metrics.json"
    if not metrics_file.is_file():
        raise FileNotFoundError(f"{metrics_file}: not found (has the run finished?)")
    info = json.loads(metrics_file.read_text()).get("run", {})
    if str(info.get("split", "")).startswith("test"):
        print(f"warning: fitting on {info['split']!r}; fit on a dev split and report on test", file=sys.stderr)
    scheme = load_label_scheme(info.get("labels_source") or info["labels"])
    return info, scheme, list(read_predictions(run / "predictions.jsonl").values())


def calibrate(cfg: C.CalibrateConfig) -> int:
    """Fit temperature scaling per task on a dev run's probabilities; print before/after ECE."""
    from mllm_mer.calibration import describe_fit, fit

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
    from mllm_mer.fusion import fit_gate
    from mllm_mer.report import fusion_rows

    options = cfg.fit
    _, scheme, records = finished_run(options.run_dir, options.out, "fit-fusion", "fusion.json")
    if not any(r["prediction"].get("experts") for r in records):
        raise ValueError(f"{options.run_dir}: no expert distributions in this run; make it with --strategy fusion")
    gate = fit_gate(records, scheme, fitted_on=str(options.run_dir))
    gate.save(options.out)
    for line in fusion_rows(records, scheme, gate):
        print(line)
    print(f"wrote {options.out} (dev numbers: fitted on these rows)")
    return 0


def distill(cfg: C.DistillConfig) -> int:
    """A teacher answers a split; its labels, rationales and cues (and traces) become a training manifest."""
    from mllm_mer.distill import run_distill

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

    from mllm_mer.evaluate import run_evaluation
    from mllm_mer.report import write_ablation

    cfg.strategy = replace(cfg.strategy, strategy="fusion", experts="all")
    with results_stdout() as out:
        run_evaluation(cfg)
        table = write_ablation(Path(cfg.run.out), cfg.strategy.fusion)
        print(table, file=out)
        print(f"ablation: {Path(cfg.run.out) / 'ablation.md'}", file=out)
    return 0


def list_bundled(cfg: C.ListConfig) -> int:
    """What ships with the package: datasets, label sets, templates, model families."""
    what = cfg.list.what
    if what == "datasets":
        from mllm_mer.datasets import DATASETS

        names = list(DATASETS)
    elif what == "labels":
        from mllm_mer.labels import available

        names = available()
    elif what == "templates":
        from mllm_mer.prompting import available_templates

        names = available_templates()
    else:
        from mllm_mer.models import FAMILIES

        names = [f"{f.name} ({', '.join(f.model_types)})" for f in FAMILIES.values()]
    print("\n".join(names))
    return 0


@dataclass(frozen=True)
class Verb:
    config: type
    run: Callable[..., int]
    help: str
    passthrough: bool = False  # unknown flags go to the wrapped program (vLLM's server)
    starts_engines: bool = False  # a watchdog stops whatever it started if it dies (process_guard)


VERBS: dict[str, Verb] = {
    "predict": Verb(C.PredictConfig, predict, "classify one clip/image/utterance and print the Prediction as JSON",
                    starts_engines=True),
    "evaluate": Verb(C.EvaluateConfig, evaluate, "batch-prompt a benchmark split; resumable; metrics and report",
                     starts_engines=True),
    "compare": Verb(C.CompareConfig, compare, "side-by-side Markdown table of finished runs"),
    "finetune": Verb(C.TrainConfig, finetune, "LoRA/QLoRA fine-tuning from a recipe (finetune/configs/*.yaml)"),
    "merge": Verb(C.MergeConfig, merge, "merge a LoRA adapter into the base weights"),
    "app": Verb(C.AppConfig, app, "the Gradio front end", starts_engines=True),
    "serve": Verb(C.ServeConfig, serve, "the OpenAI-compatible vLLM server with LoRA adapters "
                                        "(unknown flags are passed to vLLM's server)", passthrough=True,
                  starts_engines=True),
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
    "ls": Verb(C.ListConfig, list_bundled, "list what is bundled: datasets | labels | templates | models"),
}


def build_parser(verbs: dict[str, Verb] = VERBS) -> argparse.ArgumentParser:
    # No abbreviations: a prefix that matches one flag today could match another tomorrow.
    parser = argparse.ArgumentParser(prog="mllm-mer", description=__doc__, allow_abbrev=False,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for name, verb in verbs.items():
        add_config_arguments(sub.add_parser(name, help=verb.help, description=verb.help, allow_abbrev=False),
                             verb.config)
    return parser


def parse(argv: list[str], verbs: dict[str, Verb] = VERBS):
    """(verb name, its config, words passed through) from a command line."""
    parser = build_parser(verbs)
    if len(argv) > 1 and argv[1] == "--":  # `mllm-mer app -- --model M`: the old spelling
        argv = [argv[0], *argv[2:]]
    namespace, rest = parser.parse_known_args(argv)
    verb = verbs[namespace.verb]
    overrides, rest = split_overrides(rest)
    if rest and not verb.passthrough:
        reject_unknown(rest, parser._subparsers._group_actions[0].choices[namespace.verb])  # noqa: SLF001
    return namespace, config_from_namespace(verb.config, namespace, overrides), rest


def main(argv: list[str] | None = None) -> int:
    from mllm_mer.config import ConfigError
    from mllm_mer.media import MediaError

    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    try:
        namespace, cfg, rest = parse(argv)
        verb = VERBS[namespace.verb]
        if verb.starts_engines:
            from mllm_mer.process_guard import exit_on_sigterm, start_guard

            exit_on_sigterm()
            start_guard()
        return verb.run(cfg, rest) if verb.passthrough else verb.run(cfg)
    except (ConfigError, FileNotFoundError, MediaError, ValueError, RuntimeError, ConnectionError, OSError,
            KeyError, TypeError) as error:
        if debug:
            raise
        name = next((a for a in argv if not a.startswith("-")), "")
        message = str(error) if not isinstance(error, KeyError) else f"missing key {error}"
        print(f"mllm-mer {name}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
