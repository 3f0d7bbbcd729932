"""The Gradio Blocks: one small builder per tab, plain callbacks into `Service`; no model code here."""
from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import gradio as gr

from mllm_mer.app.batch_tab import build_batch_tab, public_message
from mllm_mer.app.components import (
    AUDIO_TYPES,
    MODALITY_CHOICES,
    NO_ADAPTER,
    PHYSIO_TYPES,
    REASONING_CHOICES,
    REASONING_INFO,
    VIDEO_TYPES,
    check_type,
    label_data,
    label_summary,
    reasoning_html,
    reasoning_title,
    user_error,
    user_name,
)
from mllm_mer.app.conversation_tab import build_conversation_tab
from mllm_mer.app.login import ClientAddress, LoginGuard, SessionRoutesNeedLogin
from mllm_mer.app.service import MAX_QUESTION_CHARS, AnalyseRequest, Service
from mllm_mer.core.labels import available as available_label_sets
from mllm_mer.core.registry import STRATEGIES
from mllm_mer.media.audio import SAMPLE_RATE
from mllm_mer.prompting import available_templates


def _text(content) -> str:
    """Chatbot message content as text (gradio may hand it back as a list of parts)."""
    if isinstance(content, list):
        return "".join(part.get("text", "") if isinstance(part, dict) else str(part) for part in content)
    return "" if content is None else str(content)


def headline(analysis) -> str:
    """The answer's own labels, with the most probable label beside each where they differ."""
    pred = analysis.prediction
    if not pred.ok:
        return f"**Could not analyse {analysis.clip}:** {pred.error}"
    return "  \n".join(label_summary(task, tp.label, tp.probabilities) for task, tp in pred.tasks.items())


def _collapsed(title: str, text: str, status: str = "done") -> dict:
    return {"role": "assistant", "content": text, "metadata": {"title": title, "status": status}}


def trace_messages(prediction) -> list[dict]:
    """The agent's steps as collapsible tool messages at the top of the chat, each after the thought that chose
    it; a single pass that reasoned: its reasoning; else empty."""
    trace = prediction.extra("agent").get("trace") or []
    if not trace and prediction.reasoning:
        return [_collapsed(reasoning_title(prediction.reasoning), prediction.reasoning.get("text") or "")]
    messages = []
    for step in trace:
        if step.get("thought"):
            messages.append(_collapsed(f"step {step['step']}: thought", step["thought"]["text"]))
        if step.get("tool") in (None, "answer"):
            continue
        args = ", ".join(f"{k}={v}" for k, v in (step.get("args") or {}).items())
        messages.append(_collapsed(f"step {step['step']}: {step['tool']}({args})", step.get("observation") or ""))
    if any(s.get("tool") not in (None, "answer") for s in trace):
        final = trace[-1]
        labels = ", ".join(f"{k}: {v}" for k, v in (final.get("args") or {}).items() if isinstance(v, str)
                           and k not in ("rationale",))
        messages.append(_collapsed(f"step {final['step']}: answer", labels or "(no answer)"))
    return messages


def _task_panel(analysis, index: int, folder: Path):
    """A probability panel titled by its task, headed by the answer's label (not the arg-max)."""
    tasks = list(analysis.prediction.tasks.items())
    if index >= len(tasks):  # a failed answer has no task to show; a one-task set has no second panel
        return gr.Label(value=None, label="(no answer)", visible=index == 0)
    task, tp = tasks[index]
    title = f"{task} (calibrated probabilities)" if analysis.calibrated else task
    return gr.Label(value=label_data(tp.label, tp.probabilities, folder, task), label=title, visible=True)


def _prompt_text(analysis) -> str:
    if analysis.prompt is None:
        return ""
    lines = [f"--- what the model heard ---\n{len(a) / SAMPLE_RATE:.2f} s of audio (16 kHz mono), as the prompt's "
             "audio part" for a in analysis.prompt.audios]
    for message in analysis.prompt.messages:
        content = message["content"]
        if isinstance(content, list):
            content = "\n".join(f"[{p['type']}]" if p["type"] != "text" else p["text"] for p in content)
        lines.append(f"--- {message['role']} ---\n{content}")
    return "\n\n".join(lines)


def _analyse_requests(videos, audios, transcripts, contexts, labels, templates, adapter_names, modality_sets,
                      score_only, strategies, reasonings=None, physios=None) -> list[AnalyseRequest]:
    """One request per batched call of the Analyse button (Gradio batches up to 16)."""
    requests = []
    for video, audio, transcript, context, label_set, template, adapter, modalities, score, strategy, order, physio \
            in zip(videos, audios, transcripts, contexts, labels, templates, adapter_names, modality_sets, score_only,
                   strategies, reasonings or [None] * len(videos), physios or [None] * len(videos), strict=True):
        check_type(video, VIDEO_TYPES, "video")
        check_type(audio, AUDIO_TYPES, "audio")
        check_type(physio, PHYSIO_TYPES, "a signal file")
        if not modalities:
            raise user_error("Choose at least one modality.")
        rows = context.values.tolist() if hasattr(context, "values") else (context or [])
        requests.append(AnalyseRequest(
            video=video, audio=audio, transcript=transcript or "", physio=physio or None,
            context=[(r[0], r[1]) for r in rows if len(r) >= 2], labels=label_set, template=template,
            adapter=None if adapter in (None, NO_ADAPTER) else adapter, modalities=tuple(modalities),
            mode="score" if score else "generate", strategy=strategy or None, reasoning=order or None,
            names={p: user_name(p) for p in (video, audio, physio) if p}))
    return requests


def _analysis_outputs(analysis, outbox: Path) -> tuple:
    """The values of the Analyse tab's output components for one analysis."""
    pred = analysis.prediction
    media = analysis.prompt.media if analysis.prompt else None
    download = outbox / f"prediction-{uuid.uuid4().hex[:8]}.json"
    download.write_text(json.dumps(pred.to_dict(), ensure_ascii=False, indent=2))
    about = (f"**About:** {analysis.clip} · " + ", ".join(f"{t}: {tp.label}" for t, tp in pred.tasks.items())
             if pred.ok else f"**About:** {analysis.clip} (not analysed)")
    return (headline(analysis), _task_panel(analysis, 0, outbox), _task_panel(analysis, 1, outbox),
            pred.rationale or "", [[m, c] for m, c in pred.cues.items()] or [["", ""]],
            list(media.frames) if media and media.frames else [],
            (media.transcript if media else None) or "", (media.vocal_cues if media else None) or "",
            _prompt_text(analysis), str(download), analysis, trace_messages(pred), about,
            reasoning_html(pred.reasoning), (media.physio_cues if media else None) or "",
            gr.Image(value=analysis.traces, visible=analysis.traces is not None))


def _think_handler(service: Service):
    """The Analyse button's first half (batched): where the strategy streams and the run reasons first, the
    reasoning, shown before the answer exists; the prepared samples wait in a state for `analyse`."""

    def think(*batched):
        requests = _analyse_requests(*batched)
        try:
            reasoned = service.reason_many(requests)
        except (ValueError, RuntimeError, ConnectionError, OSError) as error:
            raise user_error(public_message(str(error))) from None
        blocks = [reasoning_html(p.prompt.thought.record(p.prompt.reasoning.order), answering=True)
                  if p is not None and p.prompt is not None and p.prompt.thought is not None else "" for p in reasoned]
        return [blocks, [""] * len(requests), reasoned]

    return think


def _analyse_handler(service: Service):
    """The Analyse button's batched handler (the /analyse endpoint); its downloads go to the runs folder, kept
    bounded. Its last input: what `think` reasoned (None over the API: it reasons here)."""
    outbox = Path(service.config.ui.runs_dir).expanduser().resolve() / "analyses"

    # Named parameters, the signal files last with a default: API callers that predate them may leave them out.
    def analyse(videos, audios, transcripts, contexts, labels, templates, adapter_names, modality_sets, score_only,
                strategies, reasonings, physios=None, pending=None):
        outbox.mkdir(parents=True, exist_ok=True)
        requests = _analyse_requests(videos, audios, transcripts, contexts, labels, templates, adapter_names,
                                     modality_sets, score_only, strategies, reasonings, physios)
        pending = pending or [None] * len(requests)
        try:
            results = service.analyse_many(requests, pending if any(p is not None for p in pending) else None)
        except (ValueError, RuntimeError, ConnectionError, OSError) as error:
            raise user_error(public_message(str(error))) from None
        outputs = [_analysis_outputs(a, outbox) for a in results]
        service.housekeep()
        return [list(column) for column in zip(*outputs, strict=True)] + [[None] * len(requests)]

    return analyse


def _run_choices(config) -> tuple:
    """The Analyse tab's choices for a run: label set, template, adapter, modalities, mode, strategy, reasoning."""
    default_labels = config.prompt.labels or "meld"
    adapters = [NO_ADAPTER] + list(config.model.adapters)
    with gr.Row():
        labels = gr.Dropdown(sorted({*available_label_sets(), default_labels}), value=default_labels,
                             label="Label set", allow_custom_value=False)
        template = gr.Dropdown(available_templates(), value=config.prompt.template or "zero_shot",
                               label="Template")
        adapter = gr.Dropdown(adapters, value=NO_ADAPTER, label="Adapter")
    with gr.Row():
        modalities = gr.CheckboxGroup(MODALITY_CHOICES, value=MODALITY_CHOICES, label="Modalities")
        score_only = gr.Checkbox(False, label="Scores only (no rationale)")
        strategy = gr.Dropdown(list(STRATEGIES), value=config.strategy.strategy, label="Strategy",
                               info="agent: the model may look again, listen, recall labelled examples "
                                    "or read earlier turns before it answers; fusion: one scored "
                                    "prompt per modality, fused")
        reasoning = gr.Dropdown(REASONING_CHOICES, value=config.prompt.reasoning or "none",
                                label="Reasoning", info=REASONING_INFO)
    return labels, template, adapter, modalities, score_only, strategy, reasoning


def build_analyse_tab(service: Service, analysis_state: gr.State, chatbot: gr.Chatbot,
                      chat_header: gr.Markdown) -> None:
    config = service.config
    analyse, think = _analyse_handler(service), _think_handler(service)
    with gr.Tab("Analyse"):
        with gr.Row():
            with gr.Column():
                video = gr.Video(label="Video", sources=["upload", "webcam"])
                audio = gr.Audio(label="Audio (optional)", sources=["upload", "microphone"], type="filepath")
                physio = gr.File(label="Body signals (optional)", type="filepath",
                                 file_types=list(PHYSIO_TYPES), elem_id="physio-upload", height=90)
                transcript = gr.Textbox(label="Transcript", lines=2,
                                        placeholder="What the speaker says (left empty: transcribed from the audio "
                                                    "when an ASR model is set)")
                context = gr.Dataframe(headers=["speaker", "text"], datatype=["str", "str"], row_count=2,
                                       column_count=(2, "fixed"), label="Conversation before (optional)",
                                       interactive=True)
                labels, template, adapter, modalities, score_only, strategy, reasoning = _run_choices(config)
                analyse_button = gr.Button("Analyse", variant="primary")
                if config.ui.example_video:
                    gr.Examples([[config.ui.example_video, config.ui.example_transcript or ""]], [video, transcript],
                                label="Example")
            with gr.Column():
                # The reasoning comes first: written (and shown) before the answer it leads to.
                reasoning_block = gr.HTML(elem_id="reasoning")
                summary = gr.Markdown(elem_id="headline")
                first_task = gr.Label(label="first task", num_top_classes=8)
                second_task = gr.Label(label="second task", num_top_classes=8)
                rationale = gr.Textbox(label="Rationale", lines=3)
                cues = gr.Dataframe(headers=["modality", "cue"], label="Cues per modality", interactive=False)
                traces = gr.Image(label="Body signals the model read", type="pil", interactive=False, visible=False,
                                  elem_id="physio-traces", height=280)
                frames = gr.Gallery(label="Sampled frames", columns=8, height=140)
                with gr.Accordion("Details: transcript, vocal cues, the exact prompt", open=False):
                    asr = gr.Textbox(label="Transcript from the audio (ASR)", lines=2)
                    vocal = gr.Textbox(label="Vocal cues", lines=2)
                    body = gr.Textbox(label="Physiological cues", lines=2, elem_id="physio-cues")
                    prompt = gr.Textbox(label="Prompt", lines=8)
                    download = gr.File(label="Prediction (JSON)")
        inputs = [video, audio, transcript, context, labels, template, adapter, modalities, score_only, strategy,
                  reasoning, physio]
        pending = gr.State(None)  # the samples `think` prepared and reasoned, for `analyse` to answer
        analyse_button.click(think, inputs, [reasoning_block, summary, pending], batch=True, max_batch_size=16,
                             api_name=False).success(
            analyse, [*inputs, pending],
            [summary, first_task, second_task, rationale, cues, frames, asr, vocal, prompt, download, analysis_state,
             chatbot, chat_header, reasoning_block, body, traces, pending], batch=True, max_batch_size=16,
            api_name="analyse",
            # The reasoning stays in full view while the answer is written after it.
            show_progress_on=[summary, first_task, second_task, rationale])


def build_chat_tab(service: Service, analysis_state: gr.State, chatbot: gr.Chatbot, chat_header: gr.Markdown) -> None:
    def chat(question, history, analysis, reasoning="none"):
        if analysis is None:
            raise user_error("Analyse a clip first; the chat is about that clip.")
        if not (question or "").strip():
            raise user_error("Type a question.")
        # Tool steps and reasoning are shown collapsed; they are not turns.
        spoken = [m for m in history if not (m.get("metadata") or {}).get("title")]
        pairs = [(_text(spoken[i]["content"]), _text(spoken[i + 1]["content"])) for i in range(0, len(spoken) - 1, 2)]
        history = list(history) + [{"role": "user", "content": question}]
        try:
            prompt = service.chat_prompt(analysis, pairs, question, reasoning)
            if prompt.reasoning is not None:  # the reasoning streams first, collapsible, then the answer
                history.append(_collapsed("Reasoning…", "", "pending"))
                yield history, ""
                prompt = service.think(prompt, analysis.adapter)
                history[-1] = _collapsed(reasoning_title(prompt.thought.record(prompt.reasoning.order)),
                                         prompt.thought.text)
            history.append({"role": "assistant", "content": ""})
            for text in service.stream_chat(prompt, analysis.adapter):
                history[-1] = {"role": "assistant", "content": text}
                yield history, ""
        except (ValueError, RuntimeError, ConnectionError) as error:
            raise user_error(public_message(str(error))) from None

    with gr.Tab("Chat"):
        chat_header.render()
        chatbot.render()
        question = gr.Textbox(label="Question", placeholder="Which cue weighed most, and why?",
                              max_length=MAX_QUESTION_CHARS)
        reasoning = gr.Dropdown(REASONING_CHOICES, value=service.config.prompt.reasoning or "none",
                                label="Reasoning before the answer", info=REASONING_INFO)
        ask = gr.Button("Ask", variant="primary")
        for trigger in (ask.click, question.submit):
            # Ask is off while an answer streams, so a second question cannot overwrite the first exchange.
            trigger(lambda: (gr.Button(interactive=False), gr.Textbox(interactive=False)), None, [ask, question],
                    queue=False).then(
                chat, [question, chatbot, analysis_state, reasoning], [chatbot, question],
                api_name="chat" if trigger == ask.click else False).then(
                lambda: (gr.Button(interactive=True), gr.Textbox(interactive=True)), None, [ask, question],
                queue=False)


def _status_line(service: Service) -> str:
    """The model by its name, not its folder on the server (a hub id stays whole), and what it is doing."""
    model = str(service.config.model.model)
    shown = Path(model).name if Path(model).expanduser().exists() else model
    return f"Model `{shown}`: **{public_message(service.status)}**"


def build_demo(service: Service) -> gr.Blocks:
    keep = int(service.config.ui.keep_hours * 3600)
    # Gradio's own upload folder: checked hourly, files older than the app keeps its outputs go.
    with gr.Blocks(title="mllm-mer", delete_cache=(min(3600, keep), keep)) as demo:
        gr.Markdown("# mllm-mer\nMultimodal emotion recognition: frames, transcript, vocal cues and the "
                    "conversation go in; a label from the chosen set and a rationale citing its cues come out.")
        status = gr.Markdown(_status_line(service), elem_id="model-status")
        timer = gr.Timer(1)
        timer.tick(lambda: _status_line(service), None, status, queue=False,
                   show_progress="hidden")
        analysis_state = gr.State(None)
        # Plain text: model output is not Markdown (a `~` would strike text through).
        chatbot = gr.Chatbot(label="Ask about the analysed clip", height=360, render=False, render_markdown=False)
        chat_header = gr.Markdown("Analyse a clip first; the chat is about it.", render=False)
        build_analyse_tab(service, analysis_state, chatbot, chat_header)
        build_chat_tab(service, analysis_state, chatbot, chat_header)
        build_conversation_tab(service)
        build_batch_tab(service)
    demo.queue(default_concurrency_limit=service.config.ui.ui_concurrency)
    return demo


def launch(demo: gr.Blocks, service: Service, **kwargs):
    ui = service.config.ui
    auth = LoginGuard(ui.auth) if ui.auth else None
    if ui.host not in ("127.0.0.1", "localhost", "::1") and not auth:
        print(f"warning: serving on {ui.host} without a login (set MLLM_MER_APP_AUTH=user:password)", file=sys.stderr)
    runs = Path(ui.runs_dir).expanduser().resolve()
    runs.mkdir(parents=True, exist_ok=True)
    service.housekeep()
    from starlette.middleware import Middleware

    # FastAPI's own /openapi.json would describe every route without a login (gradio's is behind it).
    app_kwargs = {"openapi_url": None, "middleware": [Middleware(ClientAddress), Middleware(SessionRoutesNeedLogin)]}
    # Quiet: gradio's banner suggests a public share link, which this app never makes; `serve_app` prints the URL.
    kwargs.setdefault("quiet", True)
    return demo.launch(server_name=ui.host, server_port=ui.port, auth=auth, max_file_size=f"{ui.max_upload_mb}mb",
                       show_error=False, allowed_paths=[str(runs)] + _example_folder(ui), app_kwargs=app_kwargs,
                       **kwargs)


def _example_folder(ui) -> list[str]:
    # Only the example's own folder is served besides the runs: never a parent of it.
    return [str(Path(ui.example_video).expanduser().resolve().parent)] if ui.example_video else []
