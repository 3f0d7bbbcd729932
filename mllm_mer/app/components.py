"""What the tabs share: accepted upload types, upload checks, and the probability panel's value."""
from __future__ import annotations

import html
import json
import uuid
from pathlib import Path

import gradio as gr

from mllm_mer.core.types import MODALITIES

VIDEO_TYPES = (".mp4", ".avi", ".mov", ".mkv", ".webm")
AUDIO_TYPES = (".wav", ".mp3", ".flac", ".m4a", ".ogg", ".webm")
BATCH_TYPES = (".csv", ".jsonl", ".zip")
TRANSCRIPT_TYPES = (".srt", ".vtt", ".jsonl")
# Signal files the app reads (media.physio.readers); never the release pickles (.pkl, .dat): an upload is
# not trusted to unpickle.
PHYSIO_TYPES = (".csv", ".tsv", ".txt", ".npy", ".npz", ".edf", ".bdf")
NO_ADAPTER = "(base model)"
MODALITY_CHOICES = list(MODALITIES)
REASONING_CHOICES = ["none", "before", "native"]
REASONING_INFO = ("before: the model reasons in a <reasoning> block first (any model); native: a thinking "
                  "checkpoint's own <think> block; the answer and its probabilities come after the reasoning")


def user_error(message: str) -> gr.Error:
    """An error the page shows: the input is at fault, not the code, so the app's log gets no traceback for it."""
    return gr.Error(message, print_exception=False)


def check_type(path: str | None, allowed: tuple[str, ...], what: str) -> None:
    if path and Path(path).suffix.lower() not in allowed:
        raise user_error(f"{Path(path).name}: {what} must be one of {', '.join(allowed)}")


def user_name(path: str | None) -> str:
    """The name the user gave an upload (gradio keeps it as the last path part)."""
    return Path(path).name if path else ""


def label_data(label: str, probabilities: dict[str, float] | None, folder: Path, task: str) -> str:
    """A probability panel's value headed by the answer's label: gradio heads a dict value with its arg-max,
    a LabelData file keeps the head it is given."""
    ranked = sorted((probabilities or {label: 1.0}).items(), key=lambda kv: kv[1], reverse=True)
    path = folder / f"{uuid.uuid4().hex}-{task}.json"
    path.write_text(json.dumps({"label": label, "confidences": [{"label": k, "confidence": v} for k, v in ranked]}))
    return str(path)


def label_summary(task: str, label: str, probabilities: dict[str, float] | None) -> str:
    """The answer's own label with its probability, and the most probable label beside it where they differ:
    one convention for every headline (Analyse, Conversation, the utterance table)."""
    probs = probabilities or {}
    text = f"**{task}: {label}**" + (f" ({probs[label]:.0%})" if label in probs else "")
    top = max(probs, key=probs.get) if probs else label
    if top != label:
        text += f" · most probable: {top} ({probs[top]:.0%})"
    return text



def reasoning_title(record: dict) -> str:
    cut = ", cut at its bound" if record.get("cut") else ""
    return f"Reasoning ({record.get('order')}, {record.get('tokens')} tokens{cut})"


def reasoning_html(record: dict | None, answering: bool = False) -> str:
    """The reasoning as a collapsible block, shown above the answer ("" when the answer did not reason);
    `answering`: the answer is still being written after it."""
    if not record:
        return ""
    after = '<p class="reasoning-wait"><em>Answering after this reasoning…</em></p>' if answering else ""
    return (f'<details class="reasoning-block" open><summary>{html.escape(reasoning_title(record))}</summary>'
            f'<pre style="white-space: pre-wrap">{html.escape(record.get("text") or "")}</pre></details>{after}')
