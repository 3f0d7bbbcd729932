"""WESAD (Schmidt et al., 2018): one pickle per subject, `SX/SX.pkl`, chest (RespiBAN, 700 Hz) and wrist
(Empatica E4) signals with the protocol's labels at 700 Hz (1 baseline, 2 stress, 3 amusement,
4 meditation; 0 and 5-7 are transitions and are left out).

Each labelled segment is cut into windows of `window` seconds (one sample each, `step` apart), read from
the subject's file by the physiological media stage; the subject's baseline condition (its first
`baseline_s` seconds) is each sample's baseline. Splits are by subject: train S2-S11, dev S13-S14, test
S15-S17, `all`, or one subject (`S5`) for leave-one-subject-out runs.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mllm_mer.core.types import Sample
from mllm_mer.datasets.base import DatasetError, Split, non_empty, require_dir

STATES = {1: "baseline", 2: "stress", 3: "amusement", 4: "meditation"}
SUBJECTS = (2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17)  # S1 and S12 were dropped by the release
SPLITS = {"train": SUBJECTS[:10], "dev": SUBJECTS[10:12], "test": SUBJECTS[12:], "all": SUBJECTS}
LABEL_RATE = 700.0


def load(data_dir: str | Path, split: str = "all", window: float = 60.0, step: float | None = None,
         classes: int = 4, device: str = "both", baseline_s: float = 120.0) -> Split:
    """`classes`: 4 (the protocol's states) or 3 (baseline, stress, amusement: the paper's problem);
    `device`: chest, wrist or both."""
    from mllm_mer.media.errors import MediaError
    from mllm_mer.media.physio.releases import load_pickle

    root = require_dir(data_dir, "WESAD directory")
    subjects = _subjects(split)
    if classes not in (3, 4) or device not in ("chest", "wrist", "both"):
        raise DatasetError(f"WESAD: classes is 3 or 4 (not {classes!r}), device chest, wrist or both "
                           f"(not {device!r})")
    samples = []
    for number in subjects:
        path = root / f"S{number}" / f"S{number}.pkl"
        if not path.is_file():
            continue
        try:
            labels = np.asarray(load_pickle(path)["label"]).reshape(-1)
        except (OSError, KeyError, ValueError, TypeError, EOFError, MediaError) as error:
            raise DatasetError(f"{path}: not a WESAD subject file ({error.__class__.__name__}: {error})") from None
        samples += _windows(path, f"S{number}", labels, window, step or window, classes, device, baseline_s)
    if not samples and not any((root / f"S{n}" / f"S{n}.pkl").is_file() for n in subjects):
        raise DatasetError(f"{root}: no WESAD subject files (SX/SX.pkl) for split {split!r}")
    return non_empty(f"wesad/{split}", samples, labels="wesad" if classes == 4 else "wesad3")


def _subjects(split: str) -> tuple[int, ...]:
    if split in SPLITS:
        return SPLITS[split]
    if split.upper().startswith("S") and split[1:].isdigit() and int(split[1:]) in SUBJECTS:
        return (int(split[1:]),)
    raise DatasetError(f"WESAD splits are {', '.join(SPLITS)} or one subject (S2 ... S17), not {split!r}")


def segments(labels: np.ndarray) -> list[tuple[int, float, float]]:
    """(state, start s, end s) of each run of one protocol state."""
    edges = np.flatnonzero(np.diff(labels)) + 1
    bounds = zip(np.r_[0, edges], np.r_[edges, labels.size], strict=True)
    return [(int(labels[a]), float(a) / LABEL_RATE, float(b) / LABEL_RATE) for a, b in bounds
            if int(labels[a]) in STATES]


def _windows(path: Path, subject: str, labels: np.ndarray, window: float, step: float, classes: int,
             device: str, baseline_s: float) -> list[Sample]:
    runs = segments(labels)
    rest = next(((a, min(b, a + baseline_s)) for state, a, b in runs if state == 1), None)
    samples = []
    for state, start, end in runs:
        if classes == 3 and state == 4:  # the paper's three-class problem has no meditation
            continue
        t = start
        while t + window <= end + 1e-6:
            samples.append(Sample(
                id=f"{subject}/{STATES[state]}/{int(t):05d}", speaker=subject, physio=str(path), start=round(t, 3),
                end=round(t + window, 3), gold={"state": STATES[state]},
                metadata={"subject": subject, "physio_part": None if device == "both" else device,
                          **({"physio_baseline": [round(rest[0], 3), round(rest[1], 3)]} if rest else {})}))
            t += step
    return samples
