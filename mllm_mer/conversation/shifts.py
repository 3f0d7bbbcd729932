"""Emotion shifts: a speaker's emotion differs from that speaker's previous utterance."""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence


def prf(tp: int, predicted: int, gold: int) -> tuple[float, float, float]:
    """Precision, recall and F1 from counts (0 where undefined)."""
    precision = tp / predicted if predicted else 0.0
    recall = tp / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def shift_metrics(speakers: Sequence[str], gold: Sequence[str | None], predicted: Sequence[str | None]
                  ) -> dict[str, float | int]:
    """Emotion shifts: a speaker's emotion differs from that speaker's previous utterance.
    Precision/recall/F1 of predicted shifts against gold shifts, over utterances that have a previous one."""
    last_gold: dict[str, str | None] = {}
    last_pred: dict[str, str | None] = {}
    tp = fp = fn = 0
    for speaker, g, p in zip(speakers, gold, predicted, strict=True):
        if speaker in last_gold:
            gold_shift = g != last_gold[speaker]
            pred_shift = p != last_pred[speaker]
            tp += gold_shift and pred_shift
            fp += pred_shift and not gold_shift
            fn += gold_shift and not pred_shift
        last_gold[speaker], last_pred[speaker] = g, p
    precision, recall, f1 = prf(tp, tp + fp, tp + fn)
    return {"shift_precision": precision, "shift_recall": recall, "shift_f1": f1, "gold_shifts": tp + fn,
            "predicted_shifts": tp + fp, "detected_shifts": tp}


def pooled_shift_metrics(dialogues: Sequence[tuple[Sequence[str], Sequence[str | None], Sequence[str | None]]]
                         ) -> dict[str, float | int]:
    """Shift precision/recall/F1 pooled over dialogues, each given as (speakers, gold, predicted)."""
    counts: Counter = Counter()
    for speakers, gold, predicted in dialogues:
        found = shift_metrics(speakers, gold, predicted)
        counts.update(tp=found["detected_shifts"], gold=found["gold_shifts"], predicted=found["predicted_shifts"])
    precision, recall, f1 = prf(counts["tp"], counts["predicted"], counts["gold"])
    return {"shift_precision": precision, "shift_recall": recall, "shift_f1": f1, "gold_shifts": counts["gold"],
            "predicted_shifts": counts["predicted"]}
