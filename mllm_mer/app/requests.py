"""What the app asks the service for and what it gets back."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mllm_mer.core.types import Prediction, Prompt


@dataclass
class AnalyseRequest:
    video: str | None = None
    audio: str | None = None
    transcript: str = ""
    physio: str | None = None  # a signal file beside the clip (media.physio), read where "physio" is a modality
    context: list[tuple[str, str]] = field(default_factory=list)  # (speaker, text)
    labels: str | None = None  # default: the app's (or the adapter's) label set
    template: str | None = None
    adapter: str | None = None
    modalities: tuple[str, ...] | None = None  # None: the app's
    mode: str = "generate"  # generate | score
    strategy: str | None = None  # single | agent (None: the app's)
    reasoning: str | None = None  # none | before | native (None: the app's)
    names: dict[str, str] = field(default_factory=dict)  # server path -> the name the user gave it


@dataclass
class Analysis:
    prediction: Prediction
    prompt: Prompt | None
    labels: str
    adapter: str | None
    clip: str = "the clip"  # the user's name for what was analysed
    calibrated: bool = False  # probabilities temperature-scaled (--calibration)
    traces: Any = None  # the signal window the model read, drawn as one image (PIL), when a signal file was given


@dataclass
class ConversationRun:
    rows: list[dict[str, Any]]  # timeline rows (dialogue.timeline_rows), in time order
    frames: list[list[Any]]  # the frames each utterance's prompt showed
    out: Path  # timeline.png / .md / .jsonl
    reasoning: list[dict[str, Any] | None] = field(default_factory=list)  # each utterance's, when it reasoned


@dataclass(frozen=True)
class BatchOptions:
    """What a Batch run may choose beyond the label set and template; None: the app's own setting."""

    adapter: str | None = None  # None: the base model
    mode: str | None = None
    modalities: tuple[str, ...] | list[str] | None = None
    columns: dict[str, str] | None = None  # manifest column options (id_col, text_col, ...); None: the defaults
    reasoning: str | None = None  # none | before | native


@dataclass
class BatchRun:
    metrics: dict[str, Any]
    out: Path
    archive: Path  # the whole run folder as one zip


def answer_text(analysis: Analysis) -> str:
    return ", ".join(f"{task}: {tp.label}" for task, tp in analysis.prediction.tasks.items())


def batch_model(model, adapter: str | None):
    """The model settings of a Batch run: the chosen adapter first (a run answers with its first), or none."""
    if adapter is None:
        return replace(model, adapter=[])
    adapters = model.adapters
    if adapter not in adapters:
        raise ValueError(f"unknown adapter {adapter!r}; this app serves: {', '.join(adapters) or 'none'}")
    return replace(model, adapter=[f"{adapter}={adapters[adapter]}",
                                   *(f"{n}={p}" for n, p in adapters.items() if n != adapter)])
