"""The data contract: every stage takes and returns these types.

sample -> media -> prompt -> backend -> parse -> metrics. Samples and label sets are
frozen (safe to share between threads and batches); predictions serialise to one
JSON line each for resumable runs.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

# The modalities a prompt can show (and an ablation switch off), in the order experts and choices list them.
MODALITIES = ("text", "video", "audio", "physio")
# Cue keys, one per modality; the answer schema, the parser and the UI share them.
CUE_MODALITIES = ("visual", "vocal", "lexical", "context")
# Why a sample has no answer: its media could not be read; nothing was left to classify; the model
# (or server) refused the input; the answer could not be read, or was cut by the token limit; its manifest
# row could not be read (ragged); a scored predictions file had no row for it.
FAILURE_KINDS = ("media", "no_evidence", "backend", "parse", "cut", "row", "missing")
# Lone UTF-16 surrogates (from broken JSON or undecodable command-line bytes) and NUL cannot be
# encoded or tokenised; they become U+FFFD so that one bad string cannot fail a batch.
_UNENCODABLE = re.compile("[\ud800-\udfff\x00]")


class UserError(Exception):
    """A mistake its user can fix (an option, a file, a server that answers badly): the command line prints it
    on one line. Most of the project's are ValueErrors (ConfigError, MediaError, DatasetError) or OSErrors (a
    missing file, a refused connection); these are the rest. Any other exception is a bug: it keeps its traceback."""


class UnknownTask(UserError, KeyError):
    """A task name the label set does not have."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ServiceError(UserError, RuntimeError):
    """A model, engine or server the run depends on could not load, start or answer (the message says which)."""


def clean_text(text: str | None) -> str | None:
    return None if text is None else _UNENCODABLE.sub("\ufffd", str(text))


@dataclass(frozen=True)
class Turn:
    """One earlier utterance of the conversation."""

    speaker: str
    text: str
    emotion: str | None = None  # known emotion of that turn, when the data has it

    def __post_init__(self) -> None:
        object.__setattr__(self, "speaker", clean_text(self.speaker))
        object.__setattr__(self, "text", clean_text(self.text))


@dataclass(frozen=True)
class Sample:
    """One utterance/clip to classify, with whatever modalities it has."""

    id: str
    transcript: str | None = None
    speaker: str | None = None
    context: tuple[Turn, ...] = ()
    video: str | None = None  # path to a video file
    start: float | None = None  # seconds: utterance window inside a longer video
    end: float | None = None
    audio: str | None = None  # path to an audio file (else the video's audio track)
    image: Any = None  # a single still (path or PIL image), e.g. a face crop
    frames: tuple[Any, ...] = ()  # already decoded frames (PIL images or paths), in time order
    vocal_cues: str | None = None  # paralinguistic cues already put into words
    # Path to a physiological recording (media.physio: CSV/TSV, .npy/.npz, EDF/BDF); start/end window it too.
    physio: str | None = None
    gold: dict[str, Any] = field(default_factory=dict)  # task name -> gold label (or score)
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("transcript", "speaker", "vocal_cues"):
            object.__setattr__(self, name, clean_text(getattr(self, name)))

    def __hash__(self) -> int:  # dict fields make the generated hash fail; ids are unique
        return hash(self.id)


@dataclass(frozen=True)
class LabelSet:
    """A classification task: its name and the closed set of labels.

    multi_label: a sample may carry several labels (the answer is a list); open: the labels are an
    emotion vocabulary and the answer is a short list of its words, scored on emotion wheels."""

    task: str
    labels: tuple[str, ...]
    synonyms: dict[str, str] = field(default_factory=dict)  # lower-case synonym or alias -> label
    descriptions: dict[str, str] = field(default_factory=dict)  # label -> one line
    multi_label: bool = False
    open: bool = False

    def __post_init__(self) -> None:
        if len(self.labels) < 2 or len(set(self.labels)) != len(self.labels):
            raise ValueError(f"label set {self.task!r} needs at least two distinct labels")
        unknown = set(self.synonyms.values()) - set(self.labels)
        if unknown:
            raise ValueError(f"synonyms of {self.task!r} point to unknown labels: {sorted(unknown)}")

    def __hash__(self) -> int:
        return hash((self.task, self.labels))

    def normalise(self, text: str) -> str | None:
        """The label `text` names (exact, case-insensitive or a synonym), else None."""
        key = " ".join(text.strip().strip(".!\"'").lower().split())
        for label in self.labels:
            if key == label.lower():
                return label
        return self.synonyms.get(key)

    @property
    def list_answer(self) -> bool:
        """Whether the answer is a list of labels (multi-label or open vocabulary), not one label."""
        return self.multi_label or self.open


@dataclass(frozen=True)
class LabelScheme:
    """The tasks asked together (MELD: emotion + sentiment), with optional worked examples."""

    name: str
    label_sets: tuple[LabelSet, ...]
    examples: tuple[dict[str, Any], ...] = ()
    source: str | None = field(default=None, compare=False)  # the YAML file it was read from

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(ls.task for ls in self.label_sets)

    def task(self, name: str) -> LabelSet:
        for ls in self.label_sets:
            if ls.task == name:
                return ls
        raise UnknownTask(f"label set {self.name!r} has no task {name!r} (tasks: {', '.join(self.tasks)})")


@dataclass(frozen=True)
class MediaSettings:
    """How a clip is decoded: the frame and pixel budget and the audio analyses (resolved, see config.MediaConfig)."""

    max_frames: int = 8  # frames sampled per clip
    fps: float | None = None  # sample at this rate instead of uniformly (still at most max_frames)
    max_pixels: int | None = 448 * 448  # frames are downscaled to fit this budget when decoded
    # A sampled time moves onto a keyframe within this fraction of the sampling interval, when
    # there is one: a keyframe decodes alone, with no run-up (15x vs 6x on a 30 s clip, 2 s GOP);
    # frames keep their true times. This mode also skips deblocking (video.decode_cheaply).
    # 0 = exact times and pixels.
    keyframe_snap: float = 0.25
    vocal_cues: bool = True  # describe loudness, pitch, pauses, speech rate from the audio
    # The field's front end (media.faces); new fields stay out of fingerprints and cache keys at their defaults.
    visual: str = "frames"  # frames | faces | both: whole frames, face crops of the main face, or both
    frame_selection: str = "uniform"  # uniform | peak: the frames where the face departs most from its neutral
    face_detector: str = "haar"  # haar (OpenCV's bundled cascade)
    face_margin: float = 0.25  # context kept around a face box, as a share of its side
    asr_model: str | None = None  # Whisper id/path: transcribe when a sample has no transcript
    # Decoded media kept on disk up to this size (media.frame_cache); 0 = off. Where frames come from,
    # not which: no part of a run's identity (equality, fingerprint).
    media_cache_gb: float = field(default=0.0, compare=False)
    # When set, media files must resolve inside one of these folders (the app's Batch tab); any
    # other path fails with the same message whether or not it exists.
    allowed_roots: tuple[str, ...] = ()
    # Physiological signals (media.physio): the rate of files that carry none (Hz), and NAME=TYPE channel
    # declarations for columns or keys not named by their type.
    physio_rate: float | None = None
    physio_channels: tuple[str, ...] = ()
    physio_view: str = "text"  # text | plot | both: the signals in words, drawn as one image, or both


REASONING_ORDERS = ("none", "before", "native")


@dataclass(frozen=True)
class Reasoning:
    """How a prompt reasons before its answer: `before` writes a <reasoning> block that the prompt asks for
    (any model), `native` a thinking checkpoint's own think block. The block is written unconstrained and
    bounded by `max_tokens`; the answer's grammar applies only after it."""

    order: str  # before | native
    open: str  # the block's opening, written here unless the chat template already wrote it
    close: str  # what ends the block (generation of the reasoning stops there)
    max_tokens: int
    after: str = "\n"  # between the block's end and the answer object


@dataclass(frozen=True)
class Thought:
    """What a prompt reasoned: the block's text, its length in tokens, and whether it was cut at the bound."""

    text: str
    tokens: int
    cut: bool = False

    def record(self, order: str) -> dict[str, Any]:
        return {"order": order, "text": self.text, "tokens": self.tokens, "cut": self.cut}


@dataclass(frozen=True)
class PromptSetup:
    """A run's prompt, resolved once from the configs (and an adapter's saved prompt); how the model
    reaches its answer is the run's strategy (mllm_mer.strategies), not part of the prompt."""

    scheme: LabelScheme
    template: str = "zero_shot"
    modalities: tuple[str, ...] = MODALITIES
    mode: str = "generate"  # generate | score
    media: MediaSettings = field(default_factory=MediaSettings)
    max_text_chars: int = 6000  # transcript + context budget per sample; longer text is cut, with a note
    temperatures: dict[str, float] = field(default_factory=dict)  # task -> calibration temperature (1: none)
    retrieve_k: int = 4  # demonstrations the `retrieved` template shows (and `recall` may ask for)
    # > 0: the model hears (an Omni family): the prompt carries the waveform itself, up to this many
    # seconds (the family's audio window); 0: sound reaches the prompt only as transcript and cue text.
    hear_seconds: float = 0.0
    reasoning: Reasoning | None = None  # None: the answer comes first (--reasoning none)
    # What the prompt reads beyond its sample, resolved with its template: {"index"} where the template shows
    # retrieved demonstrations. A run reads this and its strategy's needs (stages.resources.NEEDS).
    needs: frozenset[str] = frozenset()


@dataclass(frozen=True)
class MediaInputs:
    """What the media stage produced for one sample (and, in a Prompt, what the prompt used)."""

    frames: tuple[Any, ...] = ()  # PIL images in time order: the clip as video
    frame_times: tuple[float, ...] = ()  # seconds, one per frame
    image: Any = None  # a single still (PIL image)
    vocal_cues: str | None = None
    transcript: str | None = None  # from ASR when the sample had none
    fps: float | None = None  # source frame rate (video metadata for families that want it)
    duration: float | None = None
    notes: tuple[str, ...] = ()  # what the reader noticed (e.g. a clip cut short), kept with the prediction
    vocal_features: dict[str, float] | None = None  # the eGeMAPS numbers behind vocal_cues (media.acoustic)
    visual: str = "frames"  # what `frames` hold: whole frames, face crops, or both (media.faces)
    # The waveform itself (16 kHz mono float32) for families that hear it (Omni thinkers).
    audio: Any = None
    physio_cues: str | None = None  # the physiological signals put into words (media.physio)
    physio_features: dict[str, float] | None = None  # the NeuroKit2 numbers behind them
    physio_plot: Any = None  # the window's traces drawn as one image (--physio-view plot|both)
    physio_view: str = "text"  # what the prompt shows of the signals: text | plot | both


@dataclass
class Prompt:
    """Chat messages for one sample, the answer schema, and the media the messages point to.

    The messages hold media as placeholders (`{"type": "video"}`); the frames live once, in `media`.
    """

    sample_id: str
    messages: list[dict[str, Any]]
    schema: dict[str, Any]
    label_sets: tuple[LabelSet, ...]
    with_rationale: bool
    media: MediaInputs = field(default_factory=MediaInputs)
    # Images shown in later turns (an agent's observations), in the order of their placeholders.
    observation_images: tuple[Any, ...] = ()
    # Sound heard in later turns (an Omni agent's listen windows: 16 kHz waveforms), likewise.
    observation_audios: tuple[Any, ...] = ()
    # Text the answer object follows in the assistant turn (an agent writes {"tool":"answer","args":ANSWER});
    # label scoring continues from it.
    answer_lead: str = ""
    # The cue fields the answer may fill: the modalities this prompt showed (see prompting.present_cues).
    cue_modalities: tuple[str, ...] = CUE_MODALITIES
    reasoning: Reasoning | None = None  # the prompt reasons first (its block, then the answer)
    thought: Thought | None = None  # what it reasoned, once the reasoning stage ran

    def written(self, template_opened: bool = False) -> str:
        """The assistant text every backend continues: the reasoning block's opening (unless the chat
        template wrote it) and, once reasoned, the thought and the block's end; "" without reasoning."""
        r = self.reasoning
        if r is None:
            return ""
        head = "" if template_opened else r.open
        return head if self.thought is None else head + self.thought.text + r.close + r.after

    @property
    def images(self) -> list[Any]:
        first = [self.media.image] if self.media.image is not None else []
        drawn = [self.media.physio_plot] if self.media.physio_plot is not None else []  # after it, as in messages
        return first + drawn + list(self.observation_images)

    @property
    def videos(self) -> list[tuple[Any, ...]]:
        return [self.media.frames] if self.media.frames else []

    @property
    def audios(self) -> list[Any]:
        first = [self.media.audio] if self.media.audio is not None else []
        return first + list(self.observation_audios)


@dataclass
class TaskPrediction:
    label: str
    probabilities: dict[str, float] | None = None  # label -> probability (sums to 1) when scored
    labels: list[str] | None = None  # list answers (multi-label, open vocabulary): every label given; label: the first


# Prediction records written before strategies kept their fields under their own names (runs still resume
# and report): top-level key -> (the strategy, the key under it; None: the value is the strategy's whole entry).
LEGACY_EXTRAS = {"trace": ("agent", "trace"), "consistency": ("consistency", None), "experts": ("fusion", "experts")}


def extras_of(prediction: dict[str, Any]) -> dict[str, Any]:
    """A prediction record's strategy extras by strategy name, an old record's top-level fields included."""
    extras = dict(prediction.get("extras") or {})
    for key, (name, inner) in LEGACY_EXTRAS.items():
        value = prediction.get(key)
        if value is not None and name not in extras:
            extras[name] = value if inner is None else {inner: value}
    return extras


@dataclass
class Prediction:
    """The answer for one sample. ok=False keeps the raw text and says why."""

    sample_id: str
    tasks: dict[str, TaskPrediction] = field(default_factory=dict)
    rationale: str | None = None
    cues: dict[str, str] = field(default_factory=dict)  # modality -> cue the answer cites
    raw: str | None = None
    ok: bool = True
    error: str | None = None
    error_kind: str | None = None  # one of FAILURE_KINDS when ok is False
    notes: list[str] = field(default_factory=list)  # what was done to the input (e.g. a transcript cut to budget)
    reasoning: dict[str, Any] | None = None  # --reasoning before|native: order, text, tokens, cut (Thought.record)
    # What a strategy adds to its answer, under the strategy's name (the agent's trace, self-consistency's
    # vote, fusion's experts); the strategy's own module writes, reads and reports it.
    extras: dict[str, Any] = field(default_factory=dict)

    def label(self, task: str) -> str | None:
        pred = self.tasks.get(task)
        return pred.label if pred else None

    def extra(self, name: str) -> dict[str, Any]:
        """What strategy `name` added to this answer ({} when nothing)."""
        return self.extras.get(name) or {}

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for task in data["tasks"].values():  # a single-label answer's record stays as it was
            if task.get("labels") is None:
                task.pop("labels", None)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Prediction:
        fields = {k: v for k, v in data.items() if k not in LEGACY_EXTRAS}
        fields["tasks"] = {k: TaskPrediction(**v) for k, v in (data.get("tasks") or {}).items()}
        fields["extras"] = extras_of(data)
        return cls(**fields)

    @classmethod
    def failure(cls, sample_id: str, error: str, raw: str | None = None, kind: str = "parse") -> Prediction:
        if kind not in FAILURE_KINDS:
            raise ValueError(f"failure kind {kind!r} is not one of {FAILURE_KINDS}")
        return cls(sample_id=sample_id, raw=raw, ok=False, error=error, error_kind=kind)
