"""CMU-MOSI / CMU-MOSEI: a CSV of id, text, sentiment score in [-3, 3].

Binary (negative < 0 <= positive, the acc-2 'has0' protocol) and 7-class (score
rounded and clipped) tasks; the score itself is kept for MAE and correlation.
"""
from __future__ import annotations

from pathlib import Path

from mllm_mer.core.labels import load_label_scheme
from mllm_mer.core.types import Sample
from mllm_mer.datasets.base import DatasetError, Split, find_video, non_empty, repair_text, require_dir
from mllm_mer.datasets.tables import read_table, rows


def score_to_class7(score: float) -> str:
    labels = load_label_scheme("mosi7").task("sentiment").labels
    return labels[int(max(-3, min(3, round(score)))) + 3]


def score_to_class2(score: float) -> str:
    return "negative" if score < 0 else "positive"


def load(data_dir: str | Path, split: str = "test", classes: int = 2, csv_name: str | None = None) -> Split:
    if classes not in (2, 7):
        raise DatasetError("MOSI/MOSEI tasks are 2-class or 7-class")
    root = require_dir(data_dir, "MOSI/MOSEI directory")
    path = root / (csv_name or "label.csv")
    if not path.is_file():
        raise DatasetError(f"{path}: label CSV not found (columns: id or video_id+clip_id, text, label/score)")
    videos = root / "video" if (root / "video").is_dir() else None
    samples = []
    for row in rows(read_table(path)):
        if row.get("mode", row.get("split", split)) != split:
            continue
        sample_id = row.get("id") or f"{row['video_id']}_{row['clip_id']}"
        score = float(row.get("label") or row.get("score"))
        label = score_to_class2(score) if classes == 2 else score_to_class7(score)
        samples.append(Sample(id=sample_id, transcript=repair_text(row["text"]),
                              video=find_video(videos, sample_id), gold={"sentiment": label},
                              metadata={"score": score}))
    return non_empty(f"mosi{classes}/{split}", samples, labels=f"mosi{classes}")
