"""The agent's tools. Each has a JSON schema for its arguments, built per sample and step so that
even a random model can only ask for what exists (times inside the clip, frames within the
budget, turns that were said), and a function that returns an observation for the next turn.

Tools never fail a sample: a file that cannot be read becomes an observation saying so.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mllm_mer.core.types import MediaInputs, Prediction, Prompt, PromptSetup, Sample, Turn
from mllm_mer.media.errors import MediaError
from mllm_mer.prompting import as_data
from mllm_mer.stages.resources import Resources

TOOL_NAMES = ("look", "listen", "recall", "context", "signals")  # `answer` is always offered
GRID_POINTS = 9  # time arguments are chosen from this many points across the clip
MAX_CONTEXT_TURNS = 5  # earlier turns one `context` call may ask for


@dataclass
class Toolbox:
    """What the tools may read and how far they may go, shared by every sample of a run."""

    setup: PromptSetup
    resources: Resources = field(default_factory=Resources)  # demonstration index, dialogue history
    tools: tuple[str, ...] = TOOL_NAMES  # offered (where usable)
    max_steps: int = 3  # backend calls per sample at most (the last may only answer)
    look_frames: int = 4  # frames one look may ask for
    # Images one prompt may carry (the backend's limit, e.g. vLLM's max_images); looks stop there.
    image_limit: int | None = None
    # Sounds one prompt may carry (an Omni model hears each listen window itself); None: the family's.
    audio_limit: int | None = None

    @property
    def index(self) -> Any:
        return self.resources.index

    @property
    def source(self) -> str | None:
        return self.resources.source

    @property
    def history(self) -> Mapping[str, tuple[Turn, ...]]:
        return self.resources.history


@dataclass
class Observation:
    text: str  # what the model reads next (quoted data already sanitised)
    summary: str  # one line for the trace
    images: tuple[Any, ...] = ()
    times: tuple[float, ...] = ()
    audios: tuple[Any, ...] = ()  # waveforms heard (Omni families), in placeholder order


@dataclass
class Episode:
    """One sample's run of the agent (one draw of it, under self-consistency)."""

    sample: Sample
    media: MediaInputs
    first: Prompt  # the single-pass prompt the conversation starts from
    messages: list[dict[str, Any]]
    draw: int = 0
    images: list[Any] = field(default_factory=list)  # observation images, in placeholder order
    audios: list[Any] = field(default_factory=list)  # observation sounds, in placeholder order
    trace: list[dict[str, Any]] = field(default_factory=list)
    frames_left: int = 0
    context_shown: int = 0
    span: tuple[float, float] | None = None  # the clip's times the tools may ask about
    sound: tuple[str, float | None, float | None] | None = None  # (file, start, end) of the utterance's audio
    waveform: Any = None
    prediction: Prediction | None = None
    last_prompt: Prompt | None = None  # the prompt the final answer was written to (scored for probabilities)


def canonical(value: Any) -> Any:
    """Whole floats as ints, as constrained decoding writes them (`1`, not `1.0`), recursively."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    return value


def grid(span: tuple[float, float]) -> list[float]:
    lo, hi = span
    step = (hi - lo) / (GRID_POINTS - 1)
    return canonical(sorted({round(lo + i * step, 2) for i in range(GRID_POINTS)}))


def _window(args: dict[str, Any], span: tuple[float, float]) -> tuple[float, float]:
    """The asked window, ordered; a zero-width one widens to one grid step."""
    start, end = sorted((float(args["start"]), float(args["end"])))
    if end - start < 1e-6:
        step = (span[1] - span[0]) / (GRID_POINTS - 1)
        end = min(span[1], start + step)
        start = max(span[0], end - step)
    return start, end


def _time_args(span: tuple[float, float]) -> dict[str, Any]:
    points = grid(span)
    return {"start": {"enum": points}, "end": {"enum": points}}


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


# -- the tools ---------------------------------------------------------------------------------

class Look:
    name = "look"
    description = ("look(start, end, n): n more frames from seconds start..end of the clip, shown as images "
                   "with their times; use it when the frames you have may have missed something")

    def parameters(self, ep: Episode, box: Toolbox) -> dict[str, Any] | None:
        if "video" not in box.setup.modalities or not ep.sample.video or not ep.media.frames or not ep.span:
            return None
        most = min(box.look_frames, ep.frames_left)
        if most < 1:
            return None
        found = {**_time_args(ep.span), "n": {"enum": list(range(1, most + 1))}}
        if box.setup.media.visual != "frames":  # a run that shows faces lets the agent ask for them too
            found["faces"] = {"type": "boolean"}
        return _object(found)

    def run(self, ep: Episode, box: Toolbox, args: dict[str, Any]) -> Observation:
        from dataclasses import replace

        from mllm_mer.media.decode import Window
        from mllm_mer.media.frontend import read_visual
        from mllm_mer.media.video import read_frames

        start, end = _window(args, ep.span)
        n = min(int(args["n"]), ep.frames_left)
        asked = sorted((float(args["start"]), float(args["end"])))
        media, notes = box.setup.media, ()
        # Exact times: the model asked for this window.
        if args.get("faces"):
            clip, notes = read_visual(ep.sample.video, Window(n, None, start, end, 0.0),
                                      replace(media, visual="faces", frame_selection="uniform"))
        else:
            clip = read_frames(ep.sample.video, n, None, start, end, media.max_pixels, 0.0, media.media_cache_gb)
        ep.frames_left -= len(clip.images)
        times = ", ".join(f"{t:.2f}" for t in clip.times)
        what = "face crops" if args.get("faces") else "frames"
        text = f"{len(clip.images)} {what} of {start:.2f}-{end:.2f} s above, at {times} s."
        if (start, end) != tuple(asked):  # say so: the frames are not from the window asked for
            text += (f" The window asked for, {asked[0]:.2f}-{asked[1]:.2f} s, holds no time of its own;"
                     f" these come from the nearest {end - start:.2f} s of the clip.")
        if notes:
            text += " " + as_data(" ".join(notes))
        return Observation(text, f"{len(clip.images)} {what} at {times} s", tuple(clip.images), tuple(clip.times))


def _hearable(ep: Episode, box: Toolbox) -> bool:
    """Whether the model hears a listened window itself: an Omni family, below the prompt's sound limit."""
    if not box.setup.hear_seconds:
        return False
    return box.audio_limit is None or (ep.media.audio is not None) + len(ep.audios) < box.audio_limit


class Listen:
    name = "listen"
    description = ("listen(start, end): vocal cues (loudness, pitch, pauses, pace) of seconds start..end, "
                   "and the words heard there when there is no transcript; a model that hears also gets "
                   "the sound of the window itself")

    def parameters(self, ep: Episode, box: Toolbox) -> dict[str, Any] | None:
        if "audio" not in box.setup.modalities or ep.sound is None or not ep.span:
            return None
        return _object(_time_args(ep.span))

    def run(self, ep: Episode, box: Toolbox, args: dict[str, Any]) -> Observation:
        from mllm_mer.media.acoustic import baseline
        from mllm_mer.media.audio import MAX_SOUND_SECONDS, SAMPLE_RATE, load_audio_upto
        from mllm_mer.media.speech_cues import cues_for

        start, end = _window(args, ep.span)
        if ep.waveform is None:
            ep.waveform = load_audio_upto(*ep.sound, MAX_SOUND_SECONDS)[0]  # decoded once per episode, bounded
        offset = ep.sound[1] or 0.0
        piece = ep.waveform[int((start - offset) * SAMPLE_RATE):int((end - offset) * SAMPLE_RATE)]
        if piece.size == 0:
            return Observation(f"no audio between {start:.2f} and {end:.2f} s.", "no audio in window")
        words = None
        if not ep.sample.transcript and box.setup.media.asr_model and "text" in box.setup.modalities:
            from mllm_mer.media.asr import transcribe
            from mllm_mer.media.vad import trim_silence

            words = as_data(transcribe(trim_silence(piece)[0], box.setup.media.asr_model))
        # The whole utterance is the speaker's baseline: the window is described relative to it.
        notes: list[str] = []
        whole = cues_for(ep.waveform, ep.sound, ep.sample.transcript, None, box.setup.media.media_cache_gb, notes)[1]
        reference = baseline([whole]) if whole and (end - start) < 0.9 * ep.waveform.size / SAMPLE_RATE else None
        cues = cues_for(piece, None, ep.sample.transcript, reference, 0.0, notes)[0]
        heard = piece[:int(box.setup.hear_seconds * SAMPLE_RATE)] if _hearable(ep, box) else None
        text = f"{start:.2f}-{end:.2f} s: <vocal_cues>{as_data(cues)}</vocal_cues>"
        if heard is not None:
            seconds = heard.size / SAMPLE_RATE
            text = f"The sound of {start:.2f}-{start + seconds:.2f} s above. " + text
        if words is not None:
            text += f" Words heard: <transcript>{words}</transcript>"
        return Observation(text, cues if heard is None else f"heard {heard.size / SAMPLE_RATE:.2f} s; {cues}",
                           audios=() if heard is None else (heard,))


class Recall:
    name = "recall"
    description = "recall(k): the k most similar utterances from labelled training data, with their labels"

    def parameters(self, ep: Episode, box: Toolbox) -> dict[str, Any] | None:
        if box.index is None or not ep.sample.transcript:
            return None
        return _object({"k": {"enum": list(range(1, max(1, box.setup.retrieve_k) + 1))}})

    def run(self, ep: Episode, box: Toolbox, args: dict[str, Any]) -> Observation:
        [found] = box.index.nearest([ep.sample], int(args["k"]), box.source)
        lines = [f"{as_data(d.speaker) or 'someone'}: {as_data(d.text)} -> "
                 + ", ".join(f"{task}: {label}" for task, label in d.labels.items()) for d in found]
        text = "Similar labelled utterances:\n<examples>\n" + "\n".join(lines) + "\n</examples>"
        return Observation(text, "; ".join(f"{d.id} ({', '.join(d.labels.values())})" for d in found))


class Context:
    name = "context"
    description = "context(n): n more earlier turns of the conversation than those shown"

    def _earlier(self, ep: Episode, box: Toolbox) -> tuple[Turn, ...]:
        turns = box.history.get(ep.sample.id, ())
        return turns[: max(0, len(turns) - len(ep.sample.context) - ep.context_shown)]

    def parameters(self, ep: Episode, box: Toolbox) -> dict[str, Any] | None:
        if "text" not in box.setup.modalities:
            return None
        left = len(self._earlier(ep, box))
        if left < 1:
            return None
        return _object({"n": {"enum": list(range(1, min(MAX_CONTEXT_TURNS, left) + 1))}})

    def run(self, ep: Episode, box: Toolbox, args: dict[str, Any]) -> Observation:
        earlier = self._earlier(ep, box)
        turns = earlier[-int(args["n"]):]
        ep.context_shown += len(turns)
        lines = [f"{as_data(t.speaker)}: {as_data(t.text)}" for t in turns]
        text = "Earlier turns, oldest first:\n<context>\n" + "\n".join(lines) + "\n</context>"
        return Observation(text, f"{len(turns)} earlier turns")


class Signals:
    name = "signals"
    description = ("signals(start, end): heart rate, skin conductance and breathing in seconds start..end of the "
                   "body signals, against this person's baseline where there is one")
    described_only_with = "physio"  # listed in the instructions only where the sample brings the modality
    MIN_SECONDS = 4.0  # a heart rate needs a few beats: shorter recordings offer no windows

    @staticmethod
    def _span(ep: Episode) -> tuple[float, float] | None:
        seconds = (ep.media.physio_features or {}).get("seconds")
        lo = ep.sample.start or 0.0
        return (lo, round(lo + seconds, 2)) if seconds else None

    def parameters(self, ep: Episode, box: Toolbox) -> dict[str, Any] | None:
        span = self._span(ep)
        if "physio" not in box.setup.modalities or not ep.sample.physio or span is None:
            return None
        return _object(_time_args(span)) if span[1] - span[0] >= self.MIN_SECONDS else None

    def run(self, ep: Episode, box: Toolbox, args: dict[str, Any]) -> Observation:
        from mllm_mer.media.physio import window_words

        start, end = _window(args, self._span(ep))
        notes: list[str] = []
        words = window_words(ep.sample, start, end, box.setup.media, notes)
        text = f"{start:.2f}-{end:.2f} s: <physio_cues>{as_data(words)}</physio_cues>"
        return Observation(text + (f" ({as_data('; '.join(notes))})" if notes else ""), words)


TOOLS = {tool.name: tool for tool in (Look(), Listen(), Recall(), Context(), Signals())}


def describe_tools(names: tuple[str, ...]) -> list[str]:
    return [TOOLS[name].description for name in names if name in TOOLS]


def described(names: Sequence[str], media: MediaInputs) -> tuple[str, ...]:
    """The tools the instructions list for a prompt: a tool tied to a modality only where the prompt has it
    (so prompts without body signals read exactly as before that tool existed)."""
    present = {"physio": bool(media.physio_features)}
    return tuple(n for n in names if n in TOOLS and present.get(getattr(TOOLS[n], "described_only_with", None), True))


def run_tool(name: str, ep: Episode, box: Toolbox, args: dict[str, Any]) -> Observation:
    """The tool's observation; a media file that cannot be read is an observation too."""
    try:
        return TOOLS[name].run(ep, box, args)
    except MediaError as error:
        return Observation(f"{name} could not read the media: {as_data(str(error))}", f"failed: {error}")


def offered(ep: Episode, box: Toolbox) -> dict[str, dict[str, Any]]:
    """The tools this episode may call now, with their argument schemas."""
    found = {}
    for name in box.tools:
        if name in TOOLS:
            schema = TOOLS[name].parameters(ep, box)
            if schema is not None:
                found[name] = schema
    return found
