"""The data contract: every stage takes and returns these types.

sample -> media -> prompt -> backend -> parse -> metrics. Samples and label sets are
frozen (safe to share between threads and batches); predictions serialise to one
JSON line each for resumable runs.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# Cue keys, one per modality; the answer schema, the parser and the UI share them.
CUE_MODALITIES = ("visual", "vocal", "lexical", "context")


@dataclass(frozen=True)
class Turn:
    """One earlier utterance of the conversation."""

    speaker: str
    text: str
    emotion: str | None = None  # known emotion of that turn, when the data has it


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
    gold: dict[str, Any] = field(default_factory=dict)  # task name -> gold label (or score)
    metadata: dict[str, Any] = field(default_factory=dict)

    def __hash__(self) -> int:  # dict fields make the generated hash fail; ids are unique
        return hash(self.id)


@dataclass(frozen=True)
class LabelSet:
    """A classification task: its name and the closed set of labels."""

    task: str
    labels: tuple[str, ...]
    synonyms: dict[str, str] = field(default_factory=dict)  # lower-case synonym -> label
    descriptions: dict[str, str] = field(default_factory=dict)  # label -> one line

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
        key = text.strip().strip(".!\"'").lower()
        for label in self.labels:
            if key == label.lower():
                return label
        return self.synonyms.get(key)


@dataclass
class TaskPrediction:
    label: str
    probabilities: dict[str, float] | None = None  # label -> probability (sums to 1) when scored


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

    def label(self, task: str) -> str | None:
        pred = self.tasks.get(task)
        return pred.label if pred else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Prediction:
        data = dict(data)
        data["tasks"] = {k: TaskPrediction(**v) for k, v in (data.get("tasks") or {}).items()}
        return cls(**data)

    @classmethod
    def failure(cls, sample_id: str, error: str, raw: str | None = None) -> Prediction:
        return cls(sample_id=sample_id, raw=raw, ok=False, error=error)
