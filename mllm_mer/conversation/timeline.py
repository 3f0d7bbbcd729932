"""A conversation's predictions as a per-speaker timeline: timeline.jsonl, timeline.png, timeline.md."""
from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mllm_mer.core.types import Prediction, Sample


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


def recording_end(samples: Sequence[Sample]) -> float | None:
    """Where the conversation's recording ends (the longest of its files), None without one or when it
    cannot be read (the utterances then carry that error themselves)."""
    from mllm_mer.media.errors import MediaError  # here: the app imports this module before it serves its page
    from mllm_mer.media.video import recording_seconds

    ends = []
    for path in dict.fromkeys(s.video or s.audio for s in samples if s.video or s.audio):
        try:
            ends.append(recording_seconds(path))
        except MediaError:
            continue
    ends = [e for e in ends if e]
    return max(ends) if ends else None


def write_timeline(rows: list[dict[str, Any]], out: Path, task: str = "emotion", context_labels: str = "predicted",
                   recording: float | None = None) -> None:
    """timeline.jsonl, timeline.png (a lane per speaker) and timeline.md (distribution and shifts);
    `recording`: where the recording ends (seconds), marked on the plot."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "timeline.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    plot_timeline(rows, out / "timeline.png", task, recording)
    speakers = list(dict.fromkeys(r["speaker"] for r in rows))
    lines = ["# Emotion timeline", "", f"{len(rows)} utterances, {len(speakers)} speakers; context labels: "
             f"{context_labels}" + (" (gold labels in the context: oracle information)" if context_labels == "gold"
                                    else ""), ""]
    if gaps := timeline_axis(rows, recording).gaps:  # what the figure drew shorter than it is, in words
        lines += ["In timeline.png, silences are drawn shorter (marked //): " + ", ".join(
            f"{g.start:.1f}-{g.end:.1f} s ({g.end - g.start:.0f} s)" for g in gaps) + ".", ""]
    if recording is not None:
        after = sum(r["start"] >= recording for r in rows)
        late = f"; {after} utterance{'s start' if after > 1 else ' starts'} after it (answered from the words alone)"
        lines += [f"The recording ends at {recording:.1f} s" + (late if after else "") + ".", ""]
    lines += ["## Per speaker", "", "| speaker | utterances | emotions |", "|---|---|---|"]
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


@dataclass(frozen=True)
class Gap:
    """A stretch with nobody speaking, drawn shorter than it is: real `start`-`end` seconds, drawn from `at`."""

    start: float
    end: float
    at: float


@dataclass(frozen=True)
class GapAxis:
    """Real time -> plot position with long silences compressed to `kept` seconds each (and back)."""

    gaps: tuple[Gap, ...]
    kept: float

    def __call__(self, t: float) -> float:
        shift = 0.0
        for gap in self.gaps:
            if t <= gap.start:
                break
            if t < gap.end:  # inside a compressed gap: proportionally within its drawn width
                return gap.at + self.kept * (t - gap.start) / (gap.end - gap.start)
            shift += (gap.end - gap.start) - self.kept
        return t - shift

    def tick(self, x: float, _=None) -> str:
        """A tick label in real seconds; none inside a compressed gap, whose time is not to scale."""
        if any(gap.at < x < gap.at + self.kept for gap in self.gaps):
            return ""
        return f"{round(self.real(x), 1):g}"

    def real(self, x: float) -> float:
        shift = 0.0
        for gap in self.gaps:
            if x <= gap.at:
                break
            if x < gap.at + self.kept:
                return gap.start + (x - gap.at) / self.kept * (gap.end - gap.start)
            shift += (gap.end - gap.start) - self.kept
        return x + shift


def gap_axis(spans: Sequence[tuple[float, float]], threshold: float | None = None) -> GapAxis:
    """The axis of a timeline whose silences longer than `threshold` (default: 3 median utterances, at least
    5 s) are compressed, so that scenes far apart in one recording do not shrink every bar to a sliver."""
    spans = sorted((float(a), float(max(a, b))) for a, b in spans)
    durations = sorted(b - a for a, b in spans if b > a) or [1.0]
    median = durations[len(durations) // 2]
    threshold = threshold if threshold is not None else max(5.0, 3 * median)
    kept = threshold / 3
    gaps, covered, removed = [], None, 0.0
    for a, b in spans:
        if covered is not None and a - covered > threshold:
            gaps.append(Gap(covered, a, covered - removed))
            removed += (a - covered) - kept
        covered = b if covered is None else max(covered, b)
    return GapAxis(tuple(gaps), kept)


def _spans(rows: list[dict[str, Any]]) -> list[tuple[float, float]]:
    return [(r["start"] or 0.0, r["end"] or (r["start"] or 0.0) + 1.0) for r in rows]


def timeline_axis(rows: list[dict[str, Any]], recording: float | None = None) -> GapAxis:
    """The time axis timeline.png is drawn on: the utterances and the recording's end, long silences compressed."""
    return gap_axis(_spans(rows) + ([(recording, recording)] if recording is not None else []))


def _mark_gaps(ax, axis: GapAxis) -> None:
    """A break symbol on the time axis and the real length of each compressed silence."""
    for gap in axis.gaps:
        middle = gap.at + axis.kept / 2
        ax.axvspan(gap.at, gap.at + axis.kept, color="0.92", zorder=0)
        ax.annotate("//", (middle, 0), xycoords=("data", "axes fraction"), ha="center", va="center",
                    fontsize=11, fontweight="bold", annotation_clip=False)
        ax.annotate(f"{gap.end - gap.start:.0f} s\nskipped", (middle, 0.98), xycoords=("data", "axes fraction"),
                    ha="center", va="top", fontsize=7)


def plot_timeline(rows: list[dict[str, Any]], path: Path, task: str = "emotion", recording: float | None = None
                  ) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    speakers = list(dict.fromkeys(r["speaker"] for r in rows))
    labels = sorted({r["labels"].get(task) for r in rows if r["ok"] and r["labels"].get(task)})
    colours = {label: plt.get_cmap("tab10")(i % 10) for i, label in enumerate(labels)}
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(rows) + 3), 0.8 * len(speakers) + 1.6))
    spans = _spans(rows)
    x = timeline_axis(rows, recording)
    last: dict[str, str | None] = {}
    for r, (real_start, real_end) in zip(rows, spans, strict=True):
        lane = speakers.index(r["speaker"])
        label = r["labels"].get(task) if r["ok"] else None
        start, end = x(real_start), x(real_end)
        colour = colours.get(label, (0.7, 0.7, 0.7, 1.0))
        ax.barh(lane, end - start, left=start, height=0.6, color=colour,
                alpha=0.3 + 0.7 * float(r["confidence"] or 0.0) if label else 0.3, edgecolor="black", linewidth=0.5)
        if label and r["speaker"] in last and last[r["speaker"]] != label:
            ax.plot([start, start], [lane - 0.4, lane + 0.4], color="black", linewidth=2)  # a shift
        if label:
            last[r["speaker"]] = label
    _mark_gaps(ax, x)
    ax.xaxis.set_major_formatter(x.tick)
    if recording is not None:
        ax.axvline(x(recording), color="black", linestyle="--", linewidth=1)
        ax.annotate("end of recording", (x(recording), 0.02), xycoords=("data", "axes fraction"), xytext=(3, 0),
                    textcoords="offset points", fontsize=8, va="bottom")
    ax.set_yticks(range(len(speakers)), speakers)
    ax.set_xlabel("time (s)" + (" (// : a long silence, drawn shorter)" if x.gaps else ""))
    ax.set_title(f"{task} per speaker (opacity: confidence; bars: shifts)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colours.values()]
    if handles:
        ax.legend(handles, list(colours), loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")  # the title and the legend beside the plot stay whole
    plt.close(fig)
