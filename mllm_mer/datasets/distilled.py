"""A distilled split (`mllm-mer distill`): the teacher's answers as training targets.

`data_dir` is the distill output folder (or its distilled.jsonl). Each row's labels are the
teacher's (rows copied for checkpoint selection carry the gold ones and say so); its rationale,
cues and agent trace become the target answer (its reasoning, in `reasoning`, the block before it with
`reasoning_col: reasoning`); the teacher's confidence is kept for weighting.
"""
from __future__ import annotations

import json
from pathlib import Path

from mllm_mer.core.types import Sample, Turn
from mllm_mer.datasets.base import DatasetError, Split, non_empty

MANIFEST = "distilled.jsonl"
LABELS = "labels.yaml"


def load(data_dir: str | Path, split: str | None = None, **_: object) -> Split:
    path = Path(data_dir)
    path = path / MANIFEST if path.is_dir() else path
    if not path.is_file():
        raise DatasetError(f"{path}: no distilled manifest (run `mllm-mer distill ... --out DIR` first)")
    samples = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise DatasetError(f"{path}:{number}: not JSON ({error.msg})") from None
        if split and row.get("split") != split:
            continue
        samples.append(Sample(
            id=row["id"], transcript=row.get("text"), speaker=row.get("speaker"),
            context=tuple(Turn(**t) for t in row.get("context") or ()), video=row.get("video"),
            audio=row.get("audio"), physio=row.get("physio"), start=row.get("start"), end=row.get("end"),
            gold=dict(row["labels"]),
            metadata={"rationale": row.get("rationale") or "", "cues": row.get("cues") or {},
                      "trace": row.get("trace"), "teacher_confidence": row.get("confidence"),
                      "dialogue": row.get("dialogue"), "source": row.get("source"), "reasoning": row.get("reasoning"),
                      **{k: row[k] for k in ("physio_part", "physio_baseline") if row.get(k) is not None}}))
    return non_empty(f"distilled/{split or 'all'}", samples, labels=str(path.parent / LABELS))
