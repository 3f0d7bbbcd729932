"""DEAP preprocessed (Koelstra et al., 2012): `sXX.dat` per subject (s01-s32), a pickle with `data` (40 trials
x 40 channels x 8064 samples at 128 Hz: 32 EEG channels, then EOG, EMG, GSR, respiration, plethysmograph,
temperature) and `labels` (40 x 4: valence, arousal, dominance, liking, rated 1-9).

One sample per trial: its 60 s of stimulus (3-63 s), with the 3 s before the stimulus as its baseline.
`target`: `binary` (valence and arousal, each high above `threshold`) or `quadrant` (HVHA, HVLA, LVHA,
LVLA). Splits are by subject: train s01-s24, dev s25-s28, test s29-s32, `all`, or one subject (`s07`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mllm_mer.core.types import Sample
from mllm_mer.datasets.base import DatasetError, Split, non_empty, require_dir

SUBJECTS = tuple(range(1, 33))
SPLITS = {"train": SUBJECTS[:24], "dev": SUBJECTS[24:28], "test": SUBJECTS[28:], "all": SUBJECTS}
BASELINE_S, TRIAL_END_S = 3.0, 63.0


def load(data_dir: str | Path, split: str = "all", target: str = "binary", threshold: float = 5.0) -> Split:
    from mllm_mer.media.errors import MediaError
    from mllm_mer.media.physio.releases import load_pickle

    root = require_dir(data_dir, "DEAP directory (data_preprocessed_python)")
    if target not in ("binary", "quadrant"):
        raise DatasetError(f"DEAP: target is binary or quadrant, not {target!r}")
    samples, found = [], 0
    for number in _subjects(split):
        path = root / f"s{number:02d}.dat"
        if not path.is_file():
            continue
        found += 1
        try:
            ratings = np.asarray(load_pickle(path)["labels"], dtype=float)
        except (OSError, KeyError, ValueError, TypeError, EOFError, MediaError) as error:
            raise DatasetError(f"{path}: not a DEAP subject file ({error.__class__.__name__}: {error})") from None
        if ratings.ndim != 2 or ratings.shape[1] < 2:
            raise DatasetError(f"{path}: labels of shape {ratings.shape}, need trials x 4 ratings")
        samples += [_trial(path, f"s{number:02d}", trial, row, target, threshold) for trial, row in enumerate(ratings)]
    if not found:
        raise DatasetError(f"{root}: no DEAP subject files (sXX.dat) for split {split!r}")
    return non_empty(f"deap/{split}", samples, labels="deap" if target == "binary" else "deap4")


def _subjects(split: str) -> tuple[int, ...]:
    if split in SPLITS:
        return SPLITS[split]
    if split.lower().startswith("s") and split[1:].isdigit() and int(split[1:]) in SUBJECTS:
        return (int(split[1:]),)
    raise DatasetError(f"DEAP splits are {', '.join(SPLITS)} or one subject (s01 ... s32), not {split!r}")


def _trial(path: Path, subject: str, trial: int, ratings: np.ndarray, target: str, threshold: float) -> Sample:
    valence = "high" if ratings[0] > threshold else "low"
    arousal = "high" if ratings[1] > threshold else "low"
    gold = ({"valence": valence, "arousal": arousal} if target == "binary"
            else {"quadrant": f"{valence[0].upper()}V{arousal[0].upper()}A"})
    return Sample(id=f"{subject}/t{trial + 1:02d}", speaker=subject, physio=str(path), start=BASELINE_S,
                  end=TRIAL_END_S, gold=gold,
                  metadata={"subject": subject, "trial": trial + 1, "physio_part": str(trial),
                            "physio_baseline": [0.0, BASELINE_S], "ratings": [round(float(r), 2) for r in ratings]})
