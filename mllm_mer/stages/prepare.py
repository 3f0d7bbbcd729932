"""The media and prompt stages for a batch: sample -> media -> prompt, or why it could not get one.

A sample whose media fails becomes a Prepared with the reason (and its failure kind), and the
rest of the batch goes on.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from mllm_mer.core.types import MediaInputs, Prompt, PromptSetup, Sample, Turn
from mllm_mer.datasets.tables import UNREADABLE_ROW
from mllm_mer.media import MediaError, load_media
from mllm_mer.media.audio import SAMPLE_RATE
from mllm_mer.prompting import build_prompt, needs_demonstrations
from mllm_mer.stages.hearing import hear
from mllm_mer.stages.resources import Resources

Stage = Callable[[str], None]  # told what the pipeline is doing now, for progress displays


def quiet(stage: str) -> None:
    """The progress display that shows nothing."""


@dataclass
class Prepared:
    """A sample made ready for a backend: its prompt, or why it could not get one."""

    sample: Sample
    prompt: Prompt | None = None
    error: str | None = None
    error_kind: str = "media"
    notes: list[str] = field(default_factory=list)
    media: MediaInputs | None = None  # what the media stage produced (the agent's tools start from it)
    demonstrations: list = field(default_factory=list)  # those the prompt shows (a label-first prompt reuses them)


def fit_text_budget(sample: Sample, max_chars: int) -> tuple[Sample, list[str]]:
    """The sample with transcript and context cut to `max_chars` in all (the latest turns kept)."""
    notes = []
    transcript = sample.transcript or ""
    if len(transcript) > max_chars:
        notes.append(f"transcript cut from {len(transcript)} to {max_chars} characters (text budget)")
        transcript = transcript[:max_chars]
    room = max_chars - len(transcript)
    kept: list[Turn] = []
    for turn in reversed(sample.context):
        cost = len(turn.text) + len(turn.speaker)
        if cost > room:
            break
        kept.insert(0, turn)
        room -= cost
    if len(kept) < len(sample.context):
        notes.append(f"context cut to its last {len(kept)} of {len(sample.context)} turns (text budget)")
    if not notes:
        return sample, notes
    return replace(sample, transcript=transcript or sample.transcript, context=tuple(kept)), notes


def present_modalities(sample: Sample, media: MediaInputs, modalities: Sequence[str]) -> list[str]:
    """The modalities a sample actually brings, once absent and ablated ones are gone."""
    present = []
    if "text" in modalities and (sample.transcript or media.transcript or "").strip():
        present.append("text")
    if "video" in modalities and (media.frames or media.image is not None):
        present.append("video")
    if "audio" in modalities and (media.vocal_cues or sample.vocal_cues or media.audio is not None):
        present.append("audio")
    if "physio" in modalities and media.physio_cues:
        present.append("physio")
    return present


def has_evidence(sample: Sample, media: MediaInputs, modalities: Sequence[str]) -> bool:
    """Whether anything is left to classify."""
    return bool(present_modalities(sample, media, modalities))


def demonstrations_for(samples: Sequence[Sample], setup: PromptSetup, resources: Resources | None,
                       on_stage: Stage = quiet) -> list[list]:
    """Per sample, the demonstrations its template shows (none for most templates)."""
    if not needs_demonstrations(setup.template):
        return [[] for _ in samples]
    if resources is None or resources.index is None:
        raise ValueError(f"template {setup.template!r} shows retrieved demonstrations: give a labelled split "
                         "to retrieve from (--retrieve-split, --retrieve-dataset, --retrieve-data-dir)")
    on_stage(f"retrieving demonstrations for {len(samples)}")
    return resources.index.nearest(list(samples), setup.retrieve_k, resources.source)


def prepare_one(sample: Sample, setup: PromptSetup, demonstrations: list) -> Prepared:
    """One sample's media and prompt, or the reason it has none."""
    if UNREADABLE_ROW in sample.metadata:  # a manifest row that could not be read: nothing to answer
        return Prepared(sample, error=str(sample.metadata[UNREADABLE_ROW]), error_kind="row")
    sample, notes = fit_text_budget(sample, setup.max_text_chars)
    try:
        inputs = load_media(sample, setup.media, modalities=setup.modalities)
        if setup.hear_seconds and "audio" in setup.modalities:
            wave, heard = hear(sample, setup.media, setup.hear_seconds)
            heard = [n for n in heard if n not in inputs.notes]  # the cue text read the same window
            inputs = replace(inputs, audio=wave, notes=inputs.notes + tuple(heard))
    except MediaError as error:
        return Prepared(sample, error=str(error), error_kind="media", notes=notes)
    if not has_evidence(sample, inputs, setup.modalities):
        return Prepared(sample, error="no usable input: empty transcript and no media "
                                      f"(modalities {', '.join(setup.modalities)})",
                        error_kind="no_evidence", notes=notes)
    prompt = build_prompt(sample, setup.scheme, setup.template, inputs, setup.modalities,
                          demonstrations=demonstrations, reasoning=setup.reasoning)
    return Prepared(sample, prompt, notes=notes + list(inputs.notes), media=inputs, demonstrations=demonstrations)


def prepare(samples: Sequence[Sample], setup: PromptSetup, on_stage: Stage = quiet,
            resources: Resources | None = None) -> list[Prepared]:
    """Media and prompt for each sample; a sample that cannot get one keeps the reason.

    A template that shows retrieved demonstrations gets them from `resources.index`."""
    demonstrations = demonstrations_for(samples, setup, resources, on_stage)
    prepared = []
    for number, (sample, demos) in enumerate(zip(samples, demonstrations, strict=True), 1):
        on_stage(f"decoding media {number}/{len(samples)}")
        prepared.append(prepare_one(sample, setup, demos))
    return prepared


def evidence_of(prepared: Prepared) -> dict:
    """What the prompt holds of a sample, for a person to check: transcript, vocal cues, frame times,
    seconds heard, and every note on what was cut or missing."""
    media = prepared.prompt.media if prepared.prompt else (prepared.media or MediaInputs())
    return {"sample": prepared.sample.id, "ok": prepared.prompt is not None, "error": prepared.error,
            "transcript": prepared.sample.transcript or media.transcript,
            "transcript_from_asr": bool(media.transcript and not prepared.sample.transcript),
            "vocal_cues": media.vocal_cues or prepared.sample.vocal_cues, "physio_cues": media.physio_cues,
            "frame_times": list(media.frame_times), "frames": len(media.frames) + (media.image is not None),
            "heard_seconds": round(len(media.audio) / SAMPLE_RATE, 2) if media.audio is not None else None,
            "context_turns": len(prepared.sample.context), "notes": prepared.notes}


def prompt_text(prepared: Prepared) -> str:
    """The prompt's messages as text, media parts as placeholders."""
    if prepared.prompt is None:
        return f"(no prompt: {prepared.error})"
    lines = []
    for message in prepared.prompt.messages:
        content = message["content"]
        if isinstance(content, list):
            content = "\n".join(p["text"] if p["type"] == "text" else f"[{p['type']}]" for p in content)
        lines.append(f"--- {message['role']} ---\n{content}")
    return "\n".join(lines)
