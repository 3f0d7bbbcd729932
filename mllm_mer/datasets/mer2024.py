"""MER2024 (Lian et al., 2024) discrete track: label CSV (name, discrete), transcriptions, videos."""
from __future__ import annotations

from pathlib import Path

from mllm_mer.core.types import Sample
from mllm_mer.datasets.base import DatasetError, Split, find_video, non_empty, repair_text, require_dir
from mllm_mer.datasets.tables import read_table, rows

LABEL_FILES = ("label-disdim.csv", "label-6way.csv", "labels.csv")
TRANSCRIPT_FILES = ("transcription-engchi-polish.csv", "transcription.csv")


def _first(root: Path, names: tuple[str, ...]) -> Path | None:
    return next((root / n for n in names if (root / n).is_file()), None)


def load(data_dir: str | Path, split: str = "train", language: str = "english",
         label_file: str | None = None) -> Split:
    root = require_dir(data_dir, "MER2024 directory")
    labels_path = Path(label_file) if label_file else _first(root, LABEL_FILES)
    if labels_path is None or not labels_path.is_file():
        raise DatasetError(f"{root}: no label CSV ({' or '.join(LABEL_FILES)})")
    transcripts: dict[str, str] = {}
    if (tpath := _first(root, TRANSCRIPT_FILES)) is not None:
        for row in rows(read_table(tpath)):
            transcripts[row["name"]] = repair_text(row.get(language) or row.get("sentence") or "")
    videos = root / "video" if (root / "video").is_dir() else None
    samples = []
    table = read_table(labels_path)
    if not {"name", "discrete"} <= set(table.column_names):
        raise DatasetError(f"{labels_path}: needs columns name and discrete")
    for row in rows(table):
        if row.get("split") and row["split"] != split:
            continue
        samples.append(Sample(id=row["name"], transcript=transcripts.get(row["name"]) or None,
                              video=find_video(videos, row["name"]),
                              gold={"emotion": row["discrete"].strip().lower()},
                              metadata={k: v for k, v in row.items() if k not in ("name", "discrete")}))
    return non_empty(f"mer2024/{split}", samples, labels="mer2024")
