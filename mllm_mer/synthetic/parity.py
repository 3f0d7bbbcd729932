"""A task that needs a serial computation: the parity of a count of cue words.

Each transcript is `CUES` words, each `true` or `false`; the emotion is joy when `false` occurs an even number
of times and sadness when odd. Parity of several inputs is what a shallow model cannot read off in one step
(the label flips with every cue, so no single word or weighted sum of words carries it), but it can be
reached by writing the intermediate result first: each row's `reasoning` column holds the count and its
parity (`false=3 odd`), and the label then follows from the last word of the reasoning. Rows are drawn so
that each count's parity class is equally likely (chance is 50%).
"""
from __future__ import annotations

import random
from pathlib import Path

from mllm_mer.synthetic.tasks import write_manifest

CUES = 5
LABELS = {0: "joy", 1: "sadness"}  # parity of the number of `false` cues
LEAD = "Answers:"
PARITY_LABELS_YAML = """name: cue-parity
tasks:
  - task: emotion
    labels: [joy, sadness]
    descriptions: {joy: pleased, sadness: sorrowful}
"""


def reasoning_text(words: list[str]) -> str:
    """The intermediate result a model can write before its answer: the count, then its parity."""
    count = words.count("false")
    return f"false={count} {'odd' if count % 2 else 'even'}"


def parity_row(rng: random.Random, split: str, index: int, odd: bool) -> dict:
    while True:
        words = [rng.choice(("true", "false")) for _ in range(CUES)]
        if words.count("false") % 2 == odd:
            break
    return {"id": f"{split}{index:04d}", "split": split, "text": " ".join([LEAD, *words]) + ".",
            "label": LABELS[int(odd)], "reasoning": reasoning_text(words), "false_count": words.count("false")}


def make_parity_task(out_dir: str | Path, n_train: int = 128, n_dev: int = 32, n_test: int = 32, seed: int = 0
                     ) -> Path:
    """Writes manifest.jsonl (split, text, label, reasoning columns) and labels.yaml; returns the manifest path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "labels.yaml").write_text(PARITY_LABELS_YAML)
    rng = random.Random(seed)
    rows = []
    for split, count in (("train", n_train), ("dev", n_dev), ("test", n_test)):
        classes = [i % 2 == 1 for i in range(count)]
        rng.shuffle(classes)
        rows += [parity_row(rng, split, i, odd) for i, odd in enumerate(classes)]
    return write_manifest(out, rows)
