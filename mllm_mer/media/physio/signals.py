"""A physiological recording as the feature stage sees it: typed channels, each at its own rate, and the
windows cut from it. Channel types come from declarations (`NAME=TYPE`, or types in column order) or from
the channel's own name (ECG, PPG/BVP, EDA/GSR, RESP, TEMP, ACC, EEG and the 10-20 electrode names)."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from mllm_mer.media.errors import MediaError, WindowOutside

TYPES = ("ecg", "ppg", "eda", "resp", "temp", "acc", "eeg")
ALIASES = {"ecg": "ecg", "ekg": "ecg", "ppg": "ppg", "bvp": "ppg", "pulse": "ppg", "eda": "eda", "gsr": "eda",
           "scl": "eda", "skin_conductance": "eda", "resp": "resp", "rsp": "resp", "respiration": "resp",
           "breathing": "resp", "temp": "temp", "skt": "temp", "temperature": "temp", "acc": "acc",
           "accelerometer": "acc", "eeg": "eeg"}
TIME_NAMES = ("time", "t", "timestamp", "time_s", "seconds", "sec")
# The international 10-20 (and 10-10) electrode names, as EEG releases label their channels (DEAP: Fp1, AF3, ...).
_ELECTRODE = re.compile(r"^(fp|af|f|fc|ft|c|cp|t|tp|p|po|o|i)(z|\d{1,2})$", re.IGNORECASE)
# NaN samples beyond this share of a channel's window make it unusable; fewer are filled in (with a note).
MAX_NAN_SHARE = 0.2


@dataclass(frozen=True)
class Channel:
    name: str  # as the file names it
    type: str  # one of TYPES
    rate: float  # samples per second
    values: np.ndarray  # float64, one dimension

    @property
    def seconds(self) -> float:
        return self.values.size / self.rate


@dataclass(frozen=True)
class Recording:
    path: str
    channels: tuple[Channel, ...]

    @property
    def duration(self) -> float:
        return max((c.seconds for c in self.channels), default=0.0)


def type_of(name: str, declared: dict[str, str]) -> str | None:
    """A channel's type: declared for its name, else read from the name; None for a column that is no signal."""
    if name in declared or name.lower() in declared:
        return declared.get(name) or declared[name.lower()]
    key = name.strip().lower().replace(" ", "_").replace("-", "_")
    if key in ALIASES:
        return ALIASES[key]
    head = re.split(r"[^a-z0-9]+|(?<=[a-z])(?=\d)", key)[0]
    if head in ALIASES:
        return ALIASES[head]
    return "eeg" if _ELECTRODE.match(name.strip()) else None


def parse_declarations(items: tuple[str, ...]) -> tuple[dict[str, str], list[str]]:
    """`NAME=TYPE` items -> {name: type}; bare types -> the types of unnamed columns, in order."""
    named, ordered = {}, []
    for item in items:
        name, sep, kind = item.partition("=")
        kind = (kind if sep else name).strip().lower()
        kind = ALIASES.get(kind, kind)
        if kind not in TYPES:
            raise ValueError(f"--physio-channels {item!r}: unknown channel type {kind!r}; choose from "
                             f"{', '.join(TYPES)} (or ppg's alias bvp, eda's alias gsr)")
        if sep:
            named[name.strip()] = kind
        else:
            ordered.append(kind)
    return named, ordered


def check_rate(path: str, name: str, rate: float | None) -> float:
    if rate is None or isinstance(rate, bool) or not math.isfinite(float(rate)) or float(rate) <= 0:
        raise MediaError(path, f"channel {name}: sampling rate {rate!r} is not a positive number of Hz")
    return float(rate)


def window(recording: Recording, start: float | None, end: float | None) -> Recording:
    """The channels between `start` and `end` seconds (None: the recording's own bounds)."""
    if not recording.channels:
        raise MediaError(recording.path, "no signal channels in it")
    duration = recording.duration
    begin = start or 0.0
    if begin >= duration:
        raise WindowOutside(recording.path, f"window {begin:.1f}-{end if end is not None else duration:.1f} s lies "
                                            f"outside the recording ({duration:.1f} s)")
    cut = [Channel(c.name, c.type, c.rate, c.values[int(begin * c.rate): None if end is None else int(end * c.rate)])
           for c in recording.channels]
    return Recording(recording.path, tuple(cut))


def clean(recording: Recording, notes: list[str]) -> Recording:
    """Each channel with short NaN runs filled in (noted); an empty or mostly-NaN channel is the sample's error."""
    kept = []
    for c in recording.channels:
        if c.values.size == 0:
            raise MediaError(recording.path, f"channel {c.name}: no samples in the window (0-length signal)")
        missing = ~np.isfinite(c.values)
        if missing.mean() > MAX_NAN_SHARE:
            raise MediaError(recording.path, f"channel {c.name}: {100 * missing.mean():.0f}% of the window is NaN "
                                             f"(at most {100 * MAX_NAN_SHARE:.0f}% is filled in)")
        values = c.values
        if missing.any():
            idx = np.arange(values.size)
            values = np.interp(idx, idx[~missing], values[~missing])
            notes.append(f"channel {c.name}: {int(missing.sum())} NaN samples filled in by interpolation")
        kept.append(Channel(c.name, c.type, c.rate, values))
    return Recording(recording.path, tuple(kept))
