"""mllm-mer in the browser: analyse a clip, chat about it, run a split.

    python app.py --model runs/tiny-model --backend vllm       (or: mllm-mer app ...)

Settings come from the command line or MLLM_MER_APP_* environment variables (see
`python app.py --help`). The UI holds no model code: it calls mllm_mer.service.
Binds 127.0.0.1 unless told otherwise.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import fields
from pathlib import Path

import gradio as gr

from mllm_mer.labels import available as available_label_sets
from mllm_mer.prompting import available_templates
from mllm_mer.service import AnalyseRequest, AppConfig, Service

VIDEO_TYPES = (".mp4", ".avi", ".mov", ".mkv", ".webm")
AUDIO_TYPES = (".wav", ".mp3", ".flac", ".m4a", ".ogg", ".webm")
MANIFEST_TYPES = (".csv", ".jsonl")
NO_ADAPTER = "(base model)"


def config_from_env(environ=os.environ) -> AppConfig:
    config = AppConfig()
    for f in fields(AppConfig):
        value = environ.get(f"MLLM_MER_APP_{f.name.upper()}")
        if value is None:
            continue
        if f.name == "adapters":
            value = dict(item.split("=", 1) for item in value.split(",") if "=" in item)
        elif f.type in ("int", int):
            value = int(value)
        elif f.type in ("bool", bool):
            value = value.lower() in ("1", "true", "yes")
        setattr(config, f.name, value)
    return config


def _text(content) -> str:
    """Chatbot message content as text (gradio may hand it back as a list of parts)."""
    if isinstance(content, list):
        return "".join(part.get("text", "") if isinstance(part, dict) else str(part) for part in content)
    return "" if content is None else str(content)


def _check_type(path: str | None, allowed: tuple[str, ...], what: str) -> None:
    if path and Path(path).suffix.lower() not in allowed:
        raise gr.Error(f"{Path(path).name}: {what} must be one of {', '.join(allowed)}")


def _task_view(analysis, index: int):
    tasks = list(analysis.prediction.tasks.items())
    if index >= len(tasks):
        return None
    task, pred = tasks[index]
    return pred.probabilities or {pred.label: 1.0}


def _summary(analysis) -> str:
    pred = analysis.prediction
    if not pred.ok:
        return f"**Could not analyse this input:** {pred.error}"
    parts = []
    for task, tp in pred.tasks.items():
        p = (tp.probabilities or {}).get(tp.label)
        parts.append(f"**{task}: {tp.label}**" + (f" ({p:.0%})" if p is not None else ""))
    return " · ".join(parts)


def build_demo(service: Service) -> gr.Blocks:
    config = service.config
    adapters = [NO_ADAPTER] + list(config.adapters)

    def analyse(videos, audios, transcripts, contexts, labels, templates, adapter_names):
        requests = []
        for video, audio, transcript, context, label_set, template, adapter in zip(
                videos, audios, transcripts, contexts, labels, templates, adapter_names):
            _check_type(video, VIDEO_TYPES, "video")
            _check_type(audio, AUDIO_TYPES, "audio")
            rows = context.values.tolist() if hasattr(context, "values") else (context or [])
            requests.append(AnalyseRequest(
                video=video, audio=audio, transcript=transcript or "",
                context=[(r[0], r[1]) for r in rows if len(r) >= 2], labels=label_set, template=template,
                adapter=None if adapter in (None, NO_ADAPTER) else adapter))
        try:
            results = service.analyse_many(requests)
        except (ValueError, RuntimeError, ConnectionError, OSError) as error:
            raise gr.Error(str(error)) from None
        columns = [[] for _ in range(7)]
        for analysis in results:
            pred = analysis.prediction
            values = (_summary(analysis), _task_view(analysis, 0), _task_view(analysis, 1), pred.rationale or "",
                      [[m, c] for m, c in pred.cues.items()] or [["", ""]],
                      list(analysis.prompt.media.frames) if analysis.prompt and analysis.prompt.media.frames else [],
                      analysis)
            for column, value in zip(columns, values):
                column.append(value)
        return columns

    def chat(question, history, analysis):
        if analysis is None:
            raise gr.Error("Analyse a clip first; the chat is about that clip.")
        if not (question or "").strip():
            raise gr.Error("Type a question.")
        pairs = [(_text(history[i]["content"]), _text(history[i + 1]["content"]))
                 for i in range(0, len(history) - 1, 2)]
        history = list(history) + [{"role": "user", "content": question}, {"role": "assistant", "content": ""}]
        try:
            for text in service.chat(analysis, pairs, question):
                history[-1] = {"role": "assistant", "content": text}
                yield history, ""
        except (ValueError, RuntimeError, ConnectionError) as error:
            raise gr.Error(str(error)) from None

    def run_batch(manifest, labels, task, limit, progress=gr.Progress(track_tqdm=True)):
        if manifest is None:
            raise gr.Error("Upload a CSV or JSONL manifest (columns: id, text, label, and optionally video).")
        _check_type(manifest, MANIFEST_TYPES, "manifest")
        try:
            metrics, out = service.run_batch(manifest, labels, task or "emotion", int(limit) if limit else None)
        except (ValueError, RuntimeError, ConnectionError, OSError) as error:
            raise gr.Error(str(error)) from None
        rows = [[t, m["n"], round(m["accuracy"], 4), round(m["weighted_f1"], 4), round(m["macro_f1"], 4),
                 round(m["uar"], 4), round(m["parse_failure_rate"], 4)] for t, m in metrics["tasks"].items()]
        status = f"{metrics['n_samples']} samples, {metrics['n_failed']} failed. Run folder: `{out}`"
        return rows, str(out / "confusion.png"), str(out / "predictions.jsonl"), status

    with gr.Blocks(title="mllm-mer") as demo:
        gr.Markdown("# mllm-mer\nMultimodal emotion recognition: frames, transcript, vocal cues and the "
                    "conversation go in; a label from the chosen set and a rationale citing its cues come out.")
        analysis_state = gr.State(None)
        with gr.Tab("Analyse"):
            with gr.Row():
                with gr.Column():
                    video = gr.Video(label="Video", sources=["upload", "webcam"])
                    audio = gr.Audio(label="Audio (optional)", sources=["upload", "microphone"], type="filepath")
                    transcript = gr.Textbox(label="Transcript", lines=2,
                                            placeholder="What the speaker says (left empty: transcribed from the audio "
                                                        "when an ASR model is set)")
                    context = gr.Dataframe(headers=["speaker", "text"], datatype=["str", "str"], row_count=2,
                                           column_count=(2, "fixed"), label="Conversation before (optional)",
                                           interactive=True)
                    with gr.Row():
                        labels = gr.Dropdown(available_label_sets(), value=config.labels, label="Label set")
                        template = gr.Dropdown(available_templates(), value=config.template, label="Template")
                        adapter = gr.Dropdown(adapters, value=NO_ADAPTER, label="Adapter")
                    analyse_button = gr.Button("Analyse", variant="primary")
                with gr.Column():
                    summary = gr.Markdown()
                    first_task = gr.Label(label="Label probabilities", num_top_classes=8)
                    second_task = gr.Label(label="Second task", num_top_classes=8)
                    rationale = gr.Textbox(label="Rationale", lines=3)
                    cues = gr.Dataframe(headers=["modality", "cue"], label="Cues per modality", interactive=False)
                    frames = gr.Gallery(label="Sampled frames", columns=8, height=140)
            analyse_button.click(analyse, [video, audio, transcript, context, labels, template, adapter],
                                 [summary, first_task, second_task, rationale, cues, frames, analysis_state],
                                 batch=True, max_batch_size=16, api_name="analyse")
        with gr.Tab("Chat"):
            chatbot = gr.Chatbot(label="Ask about the analysed clip", height=360)
            question = gr.Textbox(label="Question", placeholder="Which cue weighed most, and why?")
            ask = gr.Button("Ask", variant="primary")
            ask.click(chat, [question, chatbot, analysis_state], [chatbot, question], api_name="chat")
            question.submit(chat, [question, chatbot, analysis_state], [chatbot, question])
        with gr.Tab("Batch"):
            with gr.Row():
                manifest = gr.File(label="Manifest (CSV/JSONL)", file_types=list(MANIFEST_TYPES))
                with gr.Column():
                    batch_labels = gr.Dropdown(available_label_sets(), value=config.labels, label="Label set")
                    task = gr.Textbox(value="emotion", label="Task of the label column")
                    limit = gr.Number(label="Limit (optional)", precision=0)
                    run = gr.Button("Run", variant="primary")
            batch_status = gr.Markdown()
            metrics_table = gr.Dataframe(headers=["task", "n", "accuracy", "weighted F1", "macro F1", "UAR",
                                                  "parse failures"], label="Metrics", interactive=False)
            confusion = gr.Image(label="Confusion matrices", type="filepath")
            download = gr.File(label="predictions.jsonl")
            run.click(run_batch, [manifest, batch_labels, task, limit],
                      [metrics_table, confusion, download, batch_status], api_name="batch")
    demo.queue(default_concurrency_limit=config.concurrency)
    return demo


def parse_args(argv: list[str] | None = None, base: AppConfig | None = None) -> AppConfig:
    config = base or config_from_env()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=config.model)
    parser.add_argument("--backend", default=config.backend, choices=["vllm", "transformers", "openai"])
    parser.add_argument("--adapter", action="append", default=None, help="NAME=PATH (repeatable)")
    parser.add_argument("--base-url", default=config.base_url, help="a running `mllm-mer serve` (backend openai)")
    parser.add_argument("--api-key", default=config.api_key)
    parser.add_argument("--labels", default=config.labels)
    parser.add_argument("--template", default=config.template)
    parser.add_argument("--max-frames", type=int, default=config.max_frames)
    parser.add_argument("--asr-model", default=config.asr_model, help="Whisper id/path for empty transcripts")
    parser.add_argument("--dtype", default=config.dtype)
    parser.add_argument("--enforce-eager", action="store_true", default=config.enforce_eager)
    parser.add_argument("--max-model-len", type=int, default=config.max_model_len)
    parser.add_argument("--max-new-tokens", type=int, default=config.max_new_tokens)
    parser.add_argument("--host", default=config.host)
    parser.add_argument("--port", type=int, default=config.port)
    parser.add_argument("--auth", default=config.auth, help="user:password")
    parser.add_argument("--max-upload-mb", type=int, default=config.max_upload_mb)
    parser.add_argument("--concurrency", type=int, default=config.concurrency)
    args = parser.parse_args(argv)
    for f in fields(AppConfig):
        if f.name == "adapters":
            if args.adapter:
                config.adapters = dict(a.split("=", 1) for a in args.adapter)
        elif hasattr(args, f.name):
            setattr(config, f.name, getattr(args, f.name))
    return config


def launch(demo: gr.Blocks, config: AppConfig, **kwargs):
    auth = tuple(config.auth.split(":", 1)) if config.auth else None
    if config.host not in ("127.0.0.1", "localhost", "::1") and not auth:
        print(f"warning: serving on {config.host} without --auth", file=sys.stderr)
    return demo.launch(server_name=config.host, server_port=config.port, auth=auth,
                       max_file_size=f"{config.max_upload_mb}mb", show_error=False, **kwargs)


CONFIG = config_from_env()
SERVICE = Service(CONFIG)
demo = build_demo(SERVICE)


def main(argv: list[str] | None = None) -> None:
    global CONFIG, SERVICE, demo
    CONFIG = parse_args(argv)
    SERVICE = Service(CONFIG)
    demo = build_demo(SERVICE)
    if CONFIG.backend == "vllm":
        SERVICE.backend  # start the engine before serving (minutes for a real model, not per request)
    launch(demo, CONFIG)


if __name__ == "__main__":
    main()
