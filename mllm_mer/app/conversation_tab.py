"""The Conversation tab: a recording with its transcript -> the per-speaker emotion timeline, utterance by utterance."""
from __future__ import annotations

import gradio as gr

from mllm_mer.app.components import (
    AUDIO_TYPES,
    REASONING_CHOICES,
    REASONING_INFO,
    TRANSCRIPT_TYPES,
    VIDEO_TYPES,
    check_type,
    label_data,
    label_summary,
    reasoning_html,
    user_error,
    user_name,
)
from mllm_mer.app.service import Service
from mllm_mer.conversation.context import DEFAULT_CONTEXT_LABELS
from mllm_mer.core.labels import available as available_label_sets
from mllm_mer.prompting import available_templates

HEADERS = ["#", "speaker", "start", "end", "text", "emotion", "P(emotion)", "most probable"]
COLUMN_WIDTHS = ["4%", "10%", "7%", "7%", "35%", "12%", "11%", "14%"]


def utterance_table(rows: list[dict]) -> list[list]:
    """A row per utterance: the answer's label, its probability and, where another label is more
    probable, that one (as the headlines say it)."""
    table = []
    for number, r in enumerate(rows, 1):
        label = next(iter(r["labels"].values()), None) if r["ok"] else None
        probabilities = next(iter(r["probabilities"].values()), None) or {}
        top = max(probabilities, key=probabilities.get) if probabilities else None
        confidence = round(r["confidence"], 3) if r.get("confidence") is not None else None
        table.append([number, r["speaker"], round(r["start"], 2), round(r["end"], 2), r["text"] or "",
                      label or f"failed: {r['error']}", confidence,
                      f"{top} ({probabilities[top]:.0%})" if top and top != label else ""])
    return table


def utterance_details(run, index: int):
    """Frames, rationale, probabilities and a one-line summary of one utterance of a conversation run."""
    r = run.rows[index]
    probabilities = next(iter(r["probabilities"].values()), None) or {}
    label = next(iter(r["labels"].values()), None)
    task = next(iter(r["labels"]), "emotion")
    summary = (f"**{index + 1}. {r['speaker']}** ({r['start']:.1f}-{r['end']:.1f} s): "
               + (label_summary(task, label, probabilities) if r["ok"] and label else f"not analysed: {r['error']}")
               + ("  \n" + "; ".join(r["notes"]) if r.get("notes") else ""))
    thought = run.reasoning[index] if index < len(run.reasoning) else None
    if thought:  # the utterance's reasoning first, collapsible, as the Analyse tab shows it
        summary = reasoning_html(thought) + "\n\n" + summary
    return (summary, run.frames[index], r.get("rationale") or "",
            label_data(label, probabilities, run.out, task) if r["ok"] and label else None)


def not_analysed(reason: str) -> tuple:
    """The tab's outputs for a conversation that could not be analysed: the reason, inline; nothing else."""
    return None, [], None, None, f"**Could not analyse the conversation:** {reason}", [], "", None


def _utterance_table() -> gr.Dataframe:
    """The whole page's width and wrapped cells: every column, the probabilities too, stays in view;
    read-only cells (static), so a click selects a row and never starts an edit."""
    return gr.Dataframe(headers=HEADERS, label="Utterances (select a row for its details)", interactive=False,
                        elem_id="conversation-table", wrap=True, column_widths=COLUMN_WIDTHS,
                        static_columns=list(range(len(HEADERS))), max_height=600)


def _conversation_inputs(config) -> tuple[list, gr.Button]:
    """The recording, its transcript and the run's choices, in the order analyse() takes them."""
    default_labels = config.prompt.labels or "meld"
    with gr.Column(scale=1):
        video = gr.Video(label="Recording (video)", sources=["upload"], elem_id="conversation-video")
        audio = gr.Audio(label="Sound, if separate (optional)", sources=["upload"], type="filepath")
        transcript = gr.File(label="Transcript with speakers and times (.srt, .vtt, .jsonl)",
                             file_types=list(TRANSCRIPT_TYPES), elem_id="conversation-transcript")
        with gr.Row():
            labels = gr.Dropdown(sorted({*available_label_sets(), default_labels}), value=default_labels,
                                 label="Label set")
            template = gr.Dropdown(available_templates(), value=config.prompt.template or "zero_shot",
                                   label="Template")  # the CLI's default: one set of defaults
            context_labels = gr.Dropdown(["none", "predicted"], value=DEFAULT_CONTEXT_LABELS,
                                         label="Earlier turns' emotions in the context")
            reasoning = gr.Dropdown(REASONING_CHOICES, value=config.prompt.reasoning or "none",
                                    label="Reasoning", info=REASONING_INFO)
        go = gr.Button("Analyse conversation", variant="primary")
    return [video, audio, transcript, labels, template, context_labels, reasoning], go


def build_conversation_tab(service: Service) -> None:
    config = service.config

    def analyse(video, audio, transcript, labels, template, context_labels, reasoning="none",
                progress=gr.Progress()):  # noqa: B008
        names = {p: user_name(p) for p in (video, audio, transcript) if p}
        progress(0, desc="reading the transcript")
        try:
            check_type(video, VIDEO_TYPES, "video")
            check_type(audio, AUDIO_TYPES, "audio")
            check_type(transcript, TRANSCRIPT_TYPES, "transcript")
            run = service.conversation(video, audio, transcript, labels, template, context_labels, names,
                                       on_utterance=lambda done, total: progress(done / total,
                                                                                 desc=f"utterance {done}/{total}"),
                                       reasoning=reasoning or None)
        except gr.Error as error:  # one error display, inline, as the Analyse tab shows it
            return not_analysed(error.message)
        except (ValueError, RuntimeError, ConnectionError, OSError) as error:
            return not_analysed(str(error))
        return (str(run.out / "timeline.png"), utterance_table(run.rows), run, str(run.out / "timeline.md"),
                *utterance_details(run, 0))

    def select(run, event: gr.SelectData):
        if run is None:
            raise user_error("Analyse a conversation first.")
        return utterance_details(run, event.index[0])

    with gr.Tab("Conversation"):
        run_state = gr.State(None)
        with gr.Row():
            inputs, go = _conversation_inputs(config)
            with gr.Column(scale=2):
                # No label box: it sat over the plot's own title.
                plot = gr.Image(label="Timeline: one lane per speaker", show_label=False, type="filepath",
                                elem_id="conversation-timeline")
                report = gr.File(label="timeline.md")
        table = _utterance_table()
        with gr.Row():
            detail = gr.Markdown()
        with gr.Row():
            frames = gr.Gallery(label="Frames of the utterance", columns=8, height=140)
            rationale = gr.Textbox(label="Rationale", lines=3)
            probabilities = gr.Label(label="Probabilities", num_top_classes=8)
        go.click(analyse, inputs,
                 [plot, table, run_state, report, detail, frames, rationale, probabilities], api_name="conversation")
        table.select(select, [run_state], [detail, frames, rationale, probabilities])
