"""Whole conversations: a recording + a transcript file -> ordered utterance Samples -> a per-speaker timeline.

Transcript files: SRT (the `srt` library), WebVTT (`webvtt-py`; the speaker from `<v Name>` or a
`Name:` prefix) or JSONL turns (`speaker`, `start`, `end`, `text`). Utterances are classified in
order, each with the earlier turns as context labelled with the emotions *predicted* for them
(or none, or the gold ones: oracle information, flagged as such). Dialogues advance in lockstep:
turn i of every dialogue goes in one backend call.
"""
from __future__ import annotations

import io
import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mllm_mer.types import Prediction, PromptSetup, Sample, Turn

CONTEXT_LABELS = ("none", "predicted", "gold")
_PREFIX_SPEAKER = re.compile(r"^\s*([A-Z][\w .'-]{0,40}):\s+(.*)$", re.DOTALL)


class TranscriptError(ValueError):
    """A transcript file that cannot be read as utterances; names the file and the cue."""


@dataclass(frozen=True)
class Utterance:
    speaker: str | None
    start: float
    end: float
    text: str


def _seconds(stamp: str) -> float:
    parts = [float(p) for p in stamp.replace(",", ".").split(":")]
    value = 0.0
    for part in parts:
        value = value * 60 + part
    return value


def _speaker_and_text(text: str, voice: str | None = None) -> tuple[str | None, str]:
    text = " ".join(text.split())
    if voice:
        return voice.strip(), text
    match = _PREFIX_SPEAKER.match(text)
    return (match.group(1).strip(), match.group(2).strip()) if match else (None, text)


def read_transcript(path: str | Path) -> list[Utterance]:
    """Utterances in time order from an .srt, .vtt or .jsonl file; errors name the file and the cue."""
    path = Path(path)
    if not path.is_file():
        raise TranscriptError(f"{path}: no such transcript file")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = path.read_bytes()[:error.start].count(b"\n") + 1
        raise TranscriptError(f"{path}:{line}: not UTF-8 text (save the transcript as UTF-8)") from None
    suffix = path.suffix.lower()
    if suffix == ".srt":
        utterances = _srt(path, text)
    elif suffix == ".vtt":
        utterances = _vtt(path, text)
    elif suffix == ".jsonl":
        utterances = _jsonl(path, text)
    else:
        raise TranscriptError(f"{path}: a transcript must be .srt, .vtt or .jsonl")
    if not utterances:
        raise TranscriptError(f"{path}: no utterances")
    for number, (before, after) in enumerate(zip(utterances, utterances[1:], strict=False), 2):
        if after.start < before.start:
            raise TranscriptError(f"{path}: cue {number} starts at {after.start:.2f} s, before cue {number - 1} "
                                  f"({before.start:.2f} s); cues must be in time order")
    for number, u in enumerate(utterances, 1):
        if u.end <= u.start:
            raise TranscriptError(f"{path}: cue {number} ends ({u.end:.2f} s) before it starts ({u.start:.2f} s)")
    return utterances


def _srt(path: Path, text: str) -> list[Utterance]:
    import srt

    try:
        cues = list(srt.parse(text))
    except srt.SRTParseError as error:
        raise TranscriptError(f"{path}: not a readable SRT file ({error})") from None
    out = []
    for c in cues:
        speaker, said = _speaker_and_text(c.content)
        out.append(Utterance(speaker, c.start.total_seconds(), c.end.total_seconds(), said))
    return out


def _vtt(path: Path, text: str) -> list[Utterance]:
    import webvtt

    try:
        captions = webvtt.from_buffer(io.StringIO(text))
    except Exception as error:  # webvtt raises its own MalformedFileError / MalformedCaptionError
        raise TranscriptError(f"{path}: not a readable WebVTT file ({error})") from None
    out = []
    for c in captions:
        speaker, said = _speaker_and_text(c.text, getattr(c, "voice", None))
        out.append(Utterance(speaker, _seconds(c.start), _seconds(c.end), said))
    return out


def _jsonl(path: Path, text: str) -> list[Utterance]:
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            out.append(Utterance(row.get("speaker"), float(row["start"]), float(row["end"]), str(row["text"])))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            raise TranscriptError(f"{path}:{number}: expected {{speaker, start, end, text}}") from None
    return out


def asr_utterances(path: str, asr_model: str) -> list[Utterance]:
    """Utterances of a recording without a transcript: speech segments (split at pauses), each transcribed
    by Whisper; who speaks is unknown and the samples say so."""
    from mllm_mer.media import MediaError
    from mllm_mer.media.asr import transcribe
    from mllm_mer.media.audio import SAMPLE_RATE, load_audio
    from mllm_mer.media.cues import speech_segments

    wave = load_audio(path)
    segments = speech_segments(wave)
    if not segments:
        raise MediaError(path, "no speech found to split into utterances")
    return [Utterance(None, start, end, transcribe(wave[int(start * SAMPLE_RATE):int(end * SAMPLE_RATE)], asr_model))
            for start, end in segments]


def utterance_samples(utterances: Sequence[Utterance], video: str | None = None, audio: str | None = None,
                      prefix: str = "u") -> list[Sample]:
    """One Sample per utterance, with its window of the recording."""
    return [Sample(id=f"{prefix}{i:04d}", transcript=u.text or None, speaker=u.speaker or "unknown speaker",
                   video=video, audio=audio, start=u.start, end=u.end, metadata={"turn": i})
            for i, u in enumerate(utterances)]


def dialogues_of(samples: Sequence[Sample]) -> list[list[Sample]]:
    """A split's samples as dialogues (by their `dialogue` metadata), in split order; a sample with no
    dialogue is a dialogue of one."""
    groups: dict[Any, list[Sample]] = {}
    for sample in samples:
        key = sample.metadata.get("dialogue")
        groups.setdefault(("dialogue", key) if key is not None else ("alone", sample.id), []).append(sample)
    return list(groups.values())


def context_for(turns: Sequence[Sample], index: int, labels: Sequence[str | None], window: int) -> tuple[Turn, ...]:
    """The earlier turns of a dialogue as context, each with the emotion given for it (or none).

    The one context-building function: dialogue analysis and the agent's `context` tool use it.
    """
    start = 0 if window < 0 else max(0, index - window)
    return tuple(Turn(speaker=turns[j].speaker or "", text=turns[j].transcript or "", emotion=labels[j])
                 for j in range(start, index))


def classify_dialogues(backend, dialogues: Sequence[Sequence[Sample]], setup: PromptSetup, context_labels: str,
                       window: int = 5, adapter: str | None = None, task: str = "emotion",
                       done: dict[str, Prediction] | None = None, on_turn=None, toolbox=None,
                       batch_size: int | None = None, on_stage=None) -> list[list[Prediction]]:
    """Predictions for every turn, turn i of every dialogue in one backend call (in chunks of `batch_size`).

    `done` holds predictions already made (a resumed run): those turns are not asked again, and
    their labels still feed the context of later turns. `on_turn(samples, answered)` sees each
    chunk as it finishes (pipeline.Answered: prediction and prompt), to write it down at once.
    """
    from mllm_mer.media.windows import shared_windows
    from mllm_mer.pipeline import answer

    if context_labels not in CONTEXT_LABELS:
        raise ValueError(f"context labels must be one of {', '.join(CONTEXT_LABELS)}, not {context_labels!r}")
    done = dict(done or {})
    results: list[list[Prediction | None]] = [[None] * len(d) for d in dialogues]
    given: list[list[str | None]] = [[None] * len(d) for d in dialogues]
    # The turns of a recording are windows of one file: one decoding pass serves them all.
    with shared_windows([s for d in dialogues for s in d if s.id not in done], setup.media, setup.modalities):
        for step in range(max((len(d) for d in dialogues), default=0)):
            batch, owners = [], []
            for k, turns in enumerate(dialogues):
                if step >= len(turns):
                    continue
                sample = turns[step]
                sample = replace(sample, context=context_for(turns, step, given[k], window))
                if sample.id in done:
                    results[k][step] = done[sample.id]
                else:
                    batch.append(sample)
                    owners.append(k)
            size = batch_size or max(1, len(batch))
            for start in range(0, len(batch), size):
                chunk = batch[start:start + size]
                kwargs = {"on_stage": on_stage} if on_stage else {}
                answered = answer(backend, chunk, setup, adapter=adapter, toolbox=toolbox, **kwargs)
                for k, a in zip(owners[start:start + size], answered, strict=True):
                    results[k][step] = a.prediction
                if on_turn:
                    on_turn(chunk, answered)
            for k, turns in enumerate(dialogues):
                if step < len(turns):
                    if context_labels == "predicted":
                        given[k][step] = results[k][step].label(task)
                    elif context_labels == "gold":
                        given[k][step] = turns[step].gold.get(task)
    return results  # type: ignore[return-value]


def shift_metrics(speakers: Sequence[str], gold: Sequence[str | None], predicted: Sequence[str | None]
                  ) -> dict[str, float | int]:
    """Emotion shifts: a speaker's emotion differs from that speaker's previous utterance.
    Precision/recall/F1 of predicted shifts against gold shifts, over utterances that have a previous one."""
    last_gold: dict[str, str | None] = {}
    last_pred: dict[str, str | None] = {}
    tp = fp = fn = 0
    for speaker, g, p in zip(speakers, gold, predicted, strict=True):
        if speaker in last_gold:
            gold_shift = g != last_gold[speaker]
            pred_shift = p != last_pred[speaker]
            tp += gold_shift and pred_shift
            fp += pred_shift and not gold_shift
            fn += gold_shift and not pred_shift
        last_gold[speaker], last_pred[speaker] = g, p
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"shift_precision": precision, "shift_recall": recall, "shift_f1": f1, "gold_shifts": tp + fn,
            "predicted_shifts": tp + fp, "detected_shifts": tp}


# -- outputs ------------------------------------------------------------------------------------

def timeline_rows(samples: Sequence[Sample], predictions: Sequence[Prediction], task: str = "emotion"
                  ) -> list[dict[str, Any]]:
    """One row per utterance; without times (a dataset's text-only dialogue) the turn number is the time."""
    rows = []
    for i, (s, p) in enumerate(zip(samples, predictions, strict=True)):
        tp = p.tasks.get(task)
        start = s.start if s.start is not None else s.metadata.get("start_time")
        end = s.end if s.end is not None else s.metadata.get("end_time")
        if start is None or end is None or end <= start:
            start, end = float(i), float(i + 1)
        rows.append({"id": s.id, "speaker": s.speaker, "start": start, "end": end, "text": s.transcript,
                     "labels": {t: x.label for t, x in p.tasks.items()},
                     "probabilities": {t: x.probabilities for t, x in p.tasks.items()},
                     "confidence": (tp.probabilities or {}).get(tp.label) if tp else None,
                     "rationale": p.rationale, "ok": p.ok, "error": p.error, "notes": p.notes})
    return rows


def write_timeline(rows: list[dict[str, Any]], out: Path, task: str = "emotion", context_labels: str = "predicted"
                   ) -> None:
    """timeline.jsonl, timeline.png (a lane per speaker) and timeline.md (distribution and shifts)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "timeline.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    plot_timeline(rows, out / "timeline.png", task)
    speakers = list(dict.fromkeys(r["speaker"] for r in rows))
    lines = ["# Emotion timeline", "", f"{len(rows)} utterances, {len(speakers)} speakers; context labels: "
             f"{context_labels}" + (" (gold labels in the context: oracle information)" if context_labels == "gold"
                                    else ""), "", "## Per speaker", "", "| speaker | utterances | emotions |",
             "|---|---|---|"]
    for speaker in speakers:
        labels = Counter(r["labels"].get(task) for r in rows if r["speaker"] == speaker and r["ok"])
        lines.append(f"| {speaker} | {sum(labels.values())} | "
                     + ", ".join(f"{k} {v}" for k, v in labels.most_common()) + " |")
    lines += ["", "## Shifts", ""]
    last: dict[str, str | None] = {}
    for r in rows:
        label = r["labels"].get(task)
        if r["ok"] and r["speaker"] in last and last[r["speaker"]] != label:
            lines.append(f"- {r['start']:.1f} s, {r['speaker']}: {last[r['speaker']]} -> {label}"
                         + (f" ({r['rationale']})" if r.get("rationale") else ""))
        if r["ok"]:
            last[r["speaker"]] = label
    failed = [r for r in rows if not r["ok"]]
    if failed:
        lines += ["", "## Failed utterances", ""] + [f"- `{r['id']}`: {r['error']}" for r in failed]
    (out / "timeline.md").write_text("\n".join(lines) + "\n")


def plot_timeline(rows: list[dict[str, Any]], path: Path, task: str = "emotion") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    speakers = list(dict.fromkeys(r["speaker"] for r in rows))
    labels = sorted({r["labels"].get(task) for r in rows if r["ok"] and r["labels"].get(task)})
    colours = {label: plt.get_cmap("tab10")(i % 10) for i, label in enumerate(labels)}
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(rows) + 3), 0.8 * len(speakers) + 1.6))
    last: dict[str, str | None] = {}
    for r in rows:
        lane = speakers.index(r["speaker"])
        label = r["labels"].get(task) if r["ok"] else None
        start, end = r["start"] or 0.0, r["end"] or (r["start"] or 0.0) + 1.0
        colour = colours.get(label, (0.7, 0.7, 0.7, 1.0))
        ax.barh(lane, end - start, left=start, height=0.6, color=colour,
                alpha=0.3 + 0.7 * float(r["confidence"] or 0.0) if label else 0.3, edgecolor="black", linewidth=0.5)
        if label and r["speaker"] in last and last[r["speaker"]] != label:
            ax.plot([start, start], [lane - 0.4, lane + 0.4], color="black", linewidth=2)  # a shift
        if label:
            last[r["speaker"]] = label
    ax.set_yticks(range(len(speakers)), speakers)
    ax.set_xlabel("time (s)")
    ax.set_title(f"{task} per speaker (opacity: confidence; bars: shifts)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colours.values()]
    if handles:
        ax.legend(handles, list(colours), loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
