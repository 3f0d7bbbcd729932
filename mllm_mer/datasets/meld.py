"""MELD (Poria et al., 2019): the released CSVs, optional clips `dia{D}_utt{U}.mp4`."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from mllm_mer.core.types import Sample, Turn
from mllm_mer.datasets.base import (
    DatasetError,
    Split,
    context_window,
    find_video,
    non_empty,
    repair_text,
    require_dir,
    require_file,
)
from mllm_mer.datasets.tables import read_table, rows

COLUMNS = ("Dialogue_ID", "Utterance_ID", "Speaker", "Utterance", "Emotion", "Sentiment")
CSV_FILES = {"train": "train_sent_emo.csv", "dev": "dev_sent_emo.csv", "test": "test_sent_emo.csv"}
# Video folder names of the release (MELD.Raw), by split.
VIDEO_DIRS = {"train": ("train_splits", "train"), "dev": ("dev_splits_complete", "dev"),
              "test": ("output_repeated_splits_test", "test")}


def _seconds(stamp: str) -> float | None:
    """'00:16:16,059' -> 976.059"""
    try:
        hms, _, millis = stamp.partition(",")
        h, m, s = (int(x) for x in hms.split(":"))
        return h * 3600 + m * 60 + s + int(millis or 0) / 1000
    except ValueError:
        return None


def load(data_dir: str | Path, split: str, context: int = 5, context_labels: bool = False,
         video_dir: str | Path | None = None) -> Split:
    """Utterances of a split with the `context` previous turns of their dialogue (-1: all).

    context_labels adds the gold emotion of earlier turns (an oracle setting: off by default).
    """
    root = require_dir(data_dir, "MELD directory")
    if split not in CSV_FILES:
        raise DatasetError(f"MELD has splits {', '.join(CSV_FILES)}, not {split!r}")
    path = require_file(root / CSV_FILES[split], f"MELD {split} CSV")
    if video_dir is None:
        video_dir = next((root / d for d in VIDEO_DIRS[split] if (root / d).is_dir()), None)
    videos = Path(video_dir) if video_dir else None

    table = read_table(path)
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise DatasetError(f"{path}: no column {', '.join(missing)} (a MELD CSV has {', '.join(COLUMNS)})")
    dialogues: dict[int, list[dict]] = defaultdict(list)
    for number, row in enumerate(rows(table), 2):
        try:
            row["Utterance_ID"] = int(row["Utterance_ID"])
            dialogues[int(row["Dialogue_ID"])].append(row)
        except (TypeError, ValueError):
            raise DatasetError(f"{path}:{number}: Dialogue_ID and Utterance_ID must be whole numbers "
                               f"(got {row['Dialogue_ID']!r}, {row['Utterance_ID']!r})") from None

    samples = []
    for dia, utterances in sorted(dialogues.items()):
        utterances.sort(key=lambda r: int(r["Utterance_ID"]))
        turns = [Turn(speaker=repair_text(r["Speaker"]), text=repair_text(r["Utterance"]),
                      emotion=r["Emotion"] if context_labels else None) for r in utterances]
        for i, row in enumerate(utterances):
            utt = int(row["Utterance_ID"])
            stem = f"dia{dia}_utt{utt}"
            samples.append(Sample(
                id=stem, transcript=turns[i].text, speaker=turns[i].speaker,
                context=context_window(turns, i, context), video=find_video(videos, stem),
                gold={"emotion": row["Emotion"].strip().lower(), "sentiment": row["Sentiment"].strip().lower()},
                metadata={"dialogue": dia, "utterance": utt, "season": row.get("Season"),
                          "episode": row.get("Episode"), "start_time": _seconds(row.get("StartTime", "")),
                          "end_time": _seconds(row.get("EndTime", ""))},
            ))
    return non_empty(f"meld/{split}", samples, labels="meld")
