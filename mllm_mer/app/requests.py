"""What the app asks the service for and what it gets back."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mllm_mer.core.types import Prediction, Prompt


@dataclass
class AnalyseRequest:
    video: str | None = None
    audio: str | None = None
    transcript: str = ""
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
