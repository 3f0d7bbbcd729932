"""The Gradio Blocks: one small builder per tab, plain callbacks into `Service`; no model code here."""
from __future__ import annotations

import sys
from pathlib import Path

import gradio as gr

from mllm_mer.app.service import AnalyseRequest, Service
from mllm_mer.labels import available as available_label_sets
from mllm_mer.prompting import available_templates

VIDEO_TYPES = (".mp4", ".avi", ".mov", ".mkv", ".webm")
AUDIO_TYPES = (".wav", ".mp3", ".flac", ".m4a", ".ogg", ".webm")
MANIFEST_TYPES = (".csv", ".jsonl")
NO_ADAPTER = "(base model)"


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


def build_analyse_tab(service: Service, analysis_state: gr.State) -> None:
    config = service.config
    adapters = [NO_ADAPTER] + list(config.model.adapters)

    def analyse(videos, audios, transcripts, contexts, labels, templates, adapter_names):
        requests = []
        for video, audio, transcript, context, label_set, template, adapter in zip(
                videos, audios, transcripts, contexts, labels, templates, adapter_names, strict=True):
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
            for column, value in zip(columns, values, strict=True):
                column.append(value)
        return columns

    default_labels = config.prompt.labels or "meld"
    label_choices = sorted({*available_label_sets(), default_labels})
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
                    labels = gr.Dropdown(label_choices, value=default_labels, label="Label set")
                    template = gr.Dropdown(available_templates(), value=config.prompt.template or "zero_shot",
                                           label="Template")
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


def build_chat_tab(service: Service, analysis_state: gr.State) -> None:
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

    with gr.Tab("Chat"):
        chatbot = gr.Chatbot(label="Ask about the analysed clip", height=360)
        question = gr.Textbox(label="Question", placeholder="Which cue weighed most, and why?")
        ask = gr.Button("Ask", variant="primary")
        ask.click(chat, [question, chatbot, analysis_state], [chatbot, question], api_name="chat")
        question.submit(chat, [question, chatbot, analysis_state], [chatbot, question])


def build_batch_tab(service: Service) -> None:
    def run_batch(manifest, labels, task, limit, progress=gr.Progress(track_tqdm=True)):  # noqa: B008 (gradio's API)
        if manifest is None:
            raise gr.Error("Upload a CSV or JSONL manifest (columns: id, text, label, and optionally video).")
        _check_type(manifest, MANIFEST_TYPES, "manifest")
        try:
            metrics, out = service.run_batch(manifest, labels, task or "emotion", int(limit) if limit else None)
        except (ValueError, RuntimeError, ConnectionError, OSError) as error:
            raise gr.Error(str(error)) from None
        rows = [[t, m["n"], round(m["accuracy"], 4), round(m["weighted_f1"], 4), round(m["macro_f1"], 4),
                 round(m["uar"], 4), round(m["failure_rate"], 4)] for t, m in metrics["tasks"].items()]
        status = f"{metrics['n_samples']} samples, {metrics['n_failed']} failed. Run folder: `{out}`"
        return rows, str(out / "confusion.png"), str(out / "predictions.jsonl"), status

    default_labels = service.config.prompt.labels or "meld"
    with gr.Tab("Batch"):
        with gr.Row():
            manifest = gr.File(label="Manifest (CSV/JSONL)", file_types=list(MANIFEST_TYPES))
            with gr.Column():
                batch_labels = gr.Dropdown(sorted({*available_label_sets(), default_labels}), value=default_labels,
                                           label="Label set")
                task = gr.Textbox(value="emotion", label="Task of the label column")
                limit = gr.Number(label="Limit (optional)", precision=0)
                run = gr.Button("Run", variant="primary")
        batch_status = gr.Markdown()
        metrics_table = gr.Dataframe(headers=["task", "n", "accuracy", "weighted F1", "macro F1", "UAR",
                                              "failures"], label="Metrics", interactive=False)
        confusion = gr.Image(label="Confusion matrices", type="filepath")
        download = gr.File(label="predictions.jsonl")
        run.click(run_batch, [manifest, batch_labels, task, limit],
                  [metrics_table, confusion, download, batch_status], api_name="batch")


def build_demo(service: Service) -> gr.Blocks:
    with gr.Blocks(title="mllm-mer") as demo:
        gr.Markdown("# mllm-mer\nMultimodal emotion recognition: frames, transcript, vocal cues and the "
                    "conversation go in; a label from the chosen set and a rationale citing its cues come out.")
        analysis_state = gr.State(None)
        build_analyse_tab(service, analysis_state)
        build_chat_tab(service, analysis_state)
        build_batch_tab(service)
    demo.queue(default_concurrency_limit=service.config.ui.concurrency)
    return demo


def launch(demo: gr.Blocks, service: Service, **kwargs):
    ui = service.config.ui
    auth = tuple(ui.auth.split(":", 1)) if ui.auth else None
    if ui.host not in ("127.0.0.1", "localhost", "::1") and not auth:
        print(f"warning: serving on {ui.host} without --auth", file=sys.stderr)
    return demo.launch(server_name=ui.host, server_port=ui.port, auth=auth,
                       max_file_size=f"{ui.max_upload_mb}mb", show_error=False, **kwargs)
