"""`mllm-mer VERB ...`: one command, each verb a small function over the shared stages."""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

from mllm_mer.config import BackendConfig, PromptConfig
from mllm_mer.models import DEFAULT_MODEL

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


def parse_adapters(values: list[str] | None) -> dict[str, str]:
    """`name=path` pairs (a bare path is named after its directory)."""
    adapters = {}
    for value in values or []:
        name, sep, path = value.partition("=")
        if not sep:
            name, path = Path(value).name or "adapter", value
        adapters[name] = path
    return adapters


def read_context(path: str | None):
    from mllm_mer.types import Turn

    if not path:
        return ()
    turns = []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if line.strip():
            try:
                data = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: not a JSON line ({error})") from None
            turns.append(Turn(speaker=str(data.get("speaker", "")), text=str(data.get("text", "")),
                              emotion=data.get("emotion")))
    return tuple(turns)


def _backend_config(args: argparse.Namespace) -> BackendConfig:
    return BackendConfig(
        model=args.model, backend=args.backend, adapters=parse_adapters(args.adapter), dtype=args.dtype,
        max_new_tokens=args.max_new_tokens, base_url=args.base_url, api_key=args.api_key,
        enforce_eager=args.enforce_eager, max_model_len=args.max_model_len, kv_cache_gb=args.kv_cache_gb)


def _add_backend_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=DEFAULT_MODEL, help="hub id or local checkpoint directory")
    p.add_argument("--adapter", action="append", help="LoRA adapter: PATH or NAME=PATH (repeatable)")
    p.add_argument("--backend", default="transformers", choices=["transformers", "vllm", "openai"])
    p.add_argument("--base-url", help="OpenAI-compatible server URL (backend openai)")
    p.add_argument("--api-key", default=os.environ.get("MLLM_MER_API_KEY"))
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument("--max-new-tokens", type=int, default=BackendConfig.max_new_tokens)
    p.add_argument("--max-model-len", type=int, default=BackendConfig.max_model_len)
    p.add_argument("--kv-cache-gb", type=int, default=BackendConfig.kv_cache_gb, help="vLLM CPU KV cache")
    p.add_argument("--enforce-eager", action="store_true", help="vLLM: no graph compilation (faster start)")


def _add_prompt_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--labels", default=PromptConfig.labels, help="label set name or YAML file")
    p.add_argument("--template", default=PromptConfig.template, help="zero_shot | label_only | few_shot | .jinja")
    p.add_argument("--mode", default=PromptConfig.mode, choices=["generate", "score"])
    p.add_argument("--modalities", default="text,video,audio", help="subset of text,video,audio")
    p.add_argument("--max-frames", type=int, help="frames per clip (default: the model family's)")
    p.add_argument("--fps", type=float, help="sample frames at this rate (at most --max-frames)")
    p.add_argument("--keyframe-snap", type=float,
                   help="move a sampled time onto a keyframe within this fraction of the sampling interval "
                        "(faster decoding; default 0.25); 0 = exact times")
    p.add_argument("--asr-model", help="Whisper id or directory, used when no transcript is given")


def _prompt_config(args: argparse.Namespace) -> PromptConfig:
    return PromptConfig(labels=args.labels, template=args.template, mode=args.mode,
                        modalities=tuple(m.strip() for m in args.modalities.split(",") if m.strip()))


def _media_settings(args: argparse.Namespace):
    """Frame budget: the flags, else the model family's defaults (registry), else MediaSettings'."""
    from mllm_mer.media import MediaSettings
    from mllm_mer.models import family_for

    try:
        family = family_for(args.model)
        max_frames, max_pixels = family.max_frames, family.max_pixels
    except ValueError:  # e.g. a served model name the registry cannot tell
        max_frames, max_pixels = MediaSettings.max_frames, MediaSettings.max_pixels
    snap = MediaSettings.keyframe_snap if args.keyframe_snap is None else args.keyframe_snap
    return MediaSettings(max_frames=args.max_frames or max_frames, fps=args.fps, asr_model=args.asr_model,
                         keyframe_snap=snap, max_pixels=max_pixels)


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


def cmd_predict(args: argparse.Namespace) -> int:
    from mllm_mer.backends import load_backend
    from mllm_mer.labels import load_label_spec
    from mllm_mer.pipeline import predict
    from mllm_mer.types import Sample

    frames: tuple = ()
    if args.frames_dir:
        folder = Path(args.frames_dir)
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no such directory")
        frames = tuple(str(p) for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES)
        if not frames:
            raise FileNotFoundError(f"{folder}: no image files")
    sample = Sample(id=args.id, transcript=args.transcript, speaker=args.speaker, context=read_context(args.context),
                    video=args.video, audio=args.audio, image=args.image, frames=frames)
    spec = load_label_spec(args.labels)
    config = _backend_config(args)
    with results_stdout() as out:
        backend = load_backend(config)
        try:
            adapter = next(iter(config.adapters), None)
            [prediction] = predict(backend, [sample], spec, _prompt_config(args), _media_settings(args),
                                   adapter=adapter)
        finally:
            backend.close()
        print(json.dumps(prediction.to_dict(), ensure_ascii=False, indent=2), file=out, flush=True)
    return 0 if prediction.ok else 1


def cmd_make_tiny(args: argparse.Namespace) -> int:
    from mllm_mer.tiny import make_tiny

    out = make_tiny(args.dir, arch=args.arch, size=args.size, seed=args.seed)
    print(f"wrote a random-weight {args.size} {args.arch} checkpoint to {out}")
    if args.task:
        from mllm_mer.synthetic import make_task

        print(f"wrote the colour x wording task to {make_task(args.task).parent}")
    if args.whisper:
        from mllm_mer.tiny_whisper import make_tiny_whisper

        print(f"wrote a random-weight tiny Whisper to {make_tiny_whisper(Path(args.dir) / 'whisper')}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from mllm_mer.serve import ServeConfig, serve_forever

    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.api_key:
        print(f"warning: serving on {args.host} without --api-key: anyone who reaches it can use it",
              file=sys.stderr)
    return serve_forever(ServeConfig(
        model=args.model, adapters=parse_adapters(args.adapter), host=args.host, port=args.port,
        api_key=args.api_key, served_name=args.served_name, dtype=args.dtype, max_model_len=args.max_model_len,
        kv_cache_gb=args.kv_cache_gb, enforce_eager=args.enforce_eager, max_images=args.max_images,
        max_videos=args.max_videos, log_file=args.log_file))


def cmd_evaluate(args: argparse.Namespace) -> int:
    from mllm_mer.datasets.manifest import Columns
    from mllm_mer.evaluate import EvaluateConfig, run_evaluation

    options: dict = {}
    if args.context_window is not None and args.dataset in ("meld", "iemocap", "iemocap4", "manifest"):
        options["context"] = args.context_window
    if args.video_dir:
        options["video_dir"] = args.video_dir
    if args.dataset == "manifest":
        options["columns"] = Columns(id=args.id_col, text=args.text_col, label=args.label_col, video=args.video_col,
                                     speaker=args.speaker_col, dialogue=args.dialogue_col)
        options["labels"] = args.labels or "meld"
        options["task"] = args.task
    prompt = _prompt_config(args)
    cfg = EvaluateConfig(dataset=args.dataset, data_dir=args.data_dir, split=args.split, out=args.out,
                         limit=args.limit, batch_size=args.batch_size, adapter=next(iter(parse_adapters(args.adapter)),
                                                                                   None),
                         probabilities=args.probabilities, dataset_options=options, labels=args.labels,
                         prompt=prompt, media=_media_settings(args), backend=_backend_config(args))
    with results_stdout() as out:
        metrics = run_evaluation(cfg)
        for task, m in metrics["tasks"].items():
            print(f"{task}: accuracy {m['accuracy']:.4f}  weighted F1 {m['weighted_f1']:.4f}  "
                  f"macro F1 {m['macro_f1']:.4f}  UAR {m['uar']:.4f}  "
                  f"parse failures {m['parse_failure_rate']:.2%}", file=out)
        print(f"{metrics['n_samples']} samples, {metrics['n_failed']} failed; report: {Path(args.out) / 'report.md'}",
              file=out)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from mllm_mer.report import compare_runs

    print(compare_runs(args.runs))
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    from mllm_mer.training import TrainConfig, train

    adapter = train(TrainConfig.from_yaml(args.config, args.overrides))
    print(f"adapter: {adapter}")
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from mllm_mer.training import merge

    print(f"merged model: {merge(args.model, args.adapter, args.out)}")
    return 0


def cmd_app(args: argparse.Namespace) -> int:
    import runpy

    app_file = Path(__file__).resolve().parents[1] / "app.py"
    if not app_file.is_file():
        raise FileNotFoundError(f"{app_file}: the Gradio app ships with the source tree")
    module = runpy.run_path(str(app_file), run_name="mllm_mer_app")
    module["main"](args.app_args)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mllm-mer", description=__doc__)
    verbs = parser.add_subparsers(dest="verb", required=True)

    p = verbs.add_parser("predict", help="classify one clip/image/utterance and print the Prediction as JSON")
    _add_backend_args(p)
    _add_prompt_args(p)
    p.add_argument("--id", default="input")
    p.add_argument("--image")
    p.add_argument("--frames-dir", help="directory of frames (sorted by name)")
    p.add_argument("--video")
    p.add_argument("--audio")
    p.add_argument("--transcript")
    p.add_argument("--speaker")
    p.add_argument("--context", help="JSONL file of earlier turns: {speaker, text, emotion?}")
    p.set_defaults(func=cmd_predict)

    p = verbs.add_parser("evaluate", help="batch-prompt a benchmark split; resumable; metrics and report")
    _add_backend_args(p)
    _add_prompt_args(p)
    p.set_defaults(labels=None)
    p.add_argument("--dataset", required=True,
                   help="meld | iemocap | iemocap4 | mer2024 | ravdess | mosi | mosi7 | mosei | mosei7 | manifest")
    p.add_argument("--data-dir", required=True, help="release folder (the CSV/JSONL file for manifest)")
    p.add_argument("--split", required=True)
    p.add_argument("--out", required=True, help="run directory (rerun the same command to resume)")
    p.add_argument("--limit", type=int)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--context-window", type=int, help="previous turns given as context (-1: all)")
    p.add_argument("--video-dir", help="clips folder, if not in the release layout")
    p.add_argument("--probabilities", action="store_true", help="generate mode: also score label probabilities")
    for col, default in (("id", "id"), ("text", "text"), ("label", "label"), ("video", "video"),
                         ("speaker", "speaker"), ("dialogue", "dialogue")):
        p.add_argument(f"--{col}-col", default=default, help=f"manifest: column of the {col}")
    p.add_argument("--task", default="emotion", help="manifest: the task its label column annotates")
    p.set_defaults(func=cmd_evaluate)

    p = verbs.add_parser("compare", help="side-by-side Markdown table of finished runs")
    p.add_argument("runs", nargs="+")
    p.set_defaults(func=cmd_compare)

    p = verbs.add_parser("finetune", help="LoRA/QLoRA fine-tuning from a recipe (finetune/configs/*.yaml)")
    p.add_argument("--config", required=True)
    p.add_argument("overrides", nargs="*", help="recipe fields as key=value (YAML values)")
    p.set_defaults(func=cmd_finetune)

    p = verbs.add_parser("merge", help="merge a LoRA adapter into the base weights")
    p.add_argument("--model", required=True)
    p.add_argument("--adapter", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_merge)

    p = verbs.add_parser("app", help="the Gradio front end (options: mllm-mer app -- --help)")
    p.add_argument("app_args", nargs=argparse.REMAINDER, help="options of app.py")
    p.set_defaults(func=cmd_app)

    p = verbs.add_parser("serve", help="run the OpenAI-compatible vLLM server with LoRA adapters")
    p.add_argument("--model", default=DEFAULT_MODEL, help="hub id or local checkpoint directory")
    p.add_argument("--adapter", action="append", help="LoRA adapter NAME=PATH (repeatable)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    p.add_argument("--api-key", default=os.environ.get("MLLM_MER_API_KEY"))
    p.add_argument("--served-name", help="model name clients use (default: the model's name)")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument("--max-model-len", type=int, default=BackendConfig.max_model_len)
    p.add_argument("--kv-cache-gb", type=int, default=BackendConfig.kv_cache_gb, help="CPU build: KV cache GiB")
    p.add_argument("--enforce-eager", action="store_true")
    p.add_argument("--max-images", type=int, default=1, help="images per prompt")
    p.add_argument("--max-videos", type=int, default=1, help="videos per prompt")
    p.add_argument("--log-file", help="write the server's output here")
    p.set_defaults(func=cmd_serve)

    p = verbs.add_parser("make-tiny", help="build a random-weight checkpoint of a real architecture, offline")
    p.add_argument("dir")
    p.add_argument("--arch", default="qwen2_vl", choices=["qwen2_vl", "qwen2_5_vl"])
    p.add_argument("--size", default="tiny", choices=["tiny", "small"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--whisper", action="store_true", help="also build a tiny Whisper in DIR/whisper")
    p.add_argument("--task", metavar="TASK_DIR", help="also write the synthetic colour x wording task there")
    p.set_defaults(func=cmd_make_tiny)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from mllm_mer.media import MediaError

    try:
        return args.func(args)
    except (FileNotFoundError, MediaError, ValueError, RuntimeError, ConnectionError, OSError) as error:
        print(f"mllm-mer {args.verb}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
