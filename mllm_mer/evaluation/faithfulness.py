"""Is a rationale faithful? (`evaluate --faithfulness`) Each answered sample was re-scored without each modality
it brings (`stages.faithfulness`); here those distributions meet what its rationale and cues cite.

- by modality: how often removing it changes the label (argmax) or moves the label's probability by at least
  MOVE, over the samples that brought it;
- cited versus uncited: removing the modality the rationale relies on most (its cue fields and modality words)
  against removing each present modality it does not cite;
- cites absent: the share of rationales that cite a modality the sample did not bring;
- unfaithful: a rationale that cites an absent modality, or whose most-cited modality can be removed without
  moving the label or its probability (it cites evidence the prediction does not depend on).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mllm_mer.core.modality_words import modality_patterns
from mllm_mer.core.types import MODALITIES, extras_of

MOVE = 0.1  # a probability shift at least this large counts as moved
# Cue fields and rationale words -> the modality they stand for (context turns are text).
CUE_SOURCE = {"visual": "video", "vocal": "audio", "lexical": "text", "context": "text"}
# What the numbers rest on, written beside them: no judge is involved in any of it.
METHOD = {"label_tested": "the most probable label when the prompt with every modality is scored (label first)",
          "cited_from": "cue fields and modality words (prompts/rewards/modality_words.yaml), read without a judge",
          "judge": None}


def cited_weights(prediction: dict[str, Any]) -> dict[str, int]:
    """Modality -> how much the answer leans on it: one per filled cue field, one per modality word."""
    cues = {k: str(v) for k, v in (prediction.get("cues") or {}).items() if str(v or "").strip()}
    weights: dict[str, int] = {}
    for field in cues:
        if field in CUE_SOURCE:
            weights[CUE_SOURCE[field]] = weights.get(CUE_SOURCE[field], 0) + 1
    said = " ".join([str(prediction.get("rationale") or ""), *cues.values()])
    for field, pattern in modality_patterns().items():
        if field in CUE_SOURCE and (found := len(pattern.findall(said))):
            weights[CUE_SOURCE[field]] = weights.get(CUE_SOURCE[field], 0) + found
    return weights


def _shift(scored: dict[str, Any], removed: str, task: str) -> tuple[bool, float]:
    """(label changed, drop of the full prompt's label probability) when `removed` is taken away."""
    full, without = scored["all"][task], scored[f"-{removed}"][task]
    label = max(full, key=full.get)
    return max(without, key=without.get) != label, float(full[label] - without.get(label, 0.0))


def _agreement(rows: Sequence[tuple[dict[str, Any], dict[str, Any]]], task: str) -> float | None:
    """The share of answers whose label is the full prompt's most probable one (the label the removals test)."""
    pairs = [(label, found["scored"]["all"][task]) for prediction, found in rows
             if (label := ((prediction.get("tasks") or {}).get(task) or {}).get("label")) is not None]
    return float(np.mean([label == max(full, key=full.get) for label, full in pairs])) if pairs else None


def _rates(shifts: Sequence[tuple[bool, float]]) -> dict[str, Any]:
    if not shifts:
        return {"n": 0}
    changed = np.array([c for c, _ in shifts])
    drops = np.array([d for _, d in shifts])
    return {"n": len(shifts), "label_moved": float(changed.mean()),
            "moved": float(np.mean(changed | (np.abs(drops) >= MOVE))), "mean_probability_drop": float(drops.mean())}


def faithfulness_statistics(records: Sequence[dict[str, Any]], task: str) -> dict[str, Any] | None:
    """The metrics.json entry of a run made with --faithfulness (None: no record was re-scored)."""
    rows = [(r["prediction"], found) for r in records
            if (found := extras_of(r.get("prediction") or {}).get("faithfulness"))]
    if not rows:
        return None
    by_modality: dict[str, list] = {m: [] for m in MODALITIES}
    cited, uncited, absent, unfaithful, explained = [], [], 0, 0, 0
    for prediction, found in rows:
        present, scored = found["present"], found["scored"]
        for m in present:
            by_modality[m].append(_shift(scored, m, task))
        weights = cited_weights(prediction)
        if not weights:
            continue  # nothing cited (a label-only answer): no claim to test
        explained += 1
        cites_absent = any(m not in present for m in weights)
        absent += cites_absent
        leaned = [m for m in sorted(weights, key=lambda m: (-weights[m], MODALITIES.index(m))) if m in present]
        moved = None
        if leaned:
            cited.append(_shift(scored, leaned[0], task))
            moved = cited[-1][0] or abs(cited[-1][1]) >= MOVE
        uncited += [_shift(scored, m, task) for m in present if m not in weights]
        unfaithful += cites_absent or moved is False
    return {"task": task, "samples": len(rows), "move_threshold": MOVE, **METHOD,
            "answer_agrees": _agreement(rows, task),
            "by_modality": {m: _rates(s) for m, s in by_modality.items() if s},
            "cited": _rates(cited), "uncited": _rates(uncited), "explained": explained,
            "cites_absent": absent / explained if explained else None,
            "unfaithful": unfaithful / explained if explained else None}


def _row(name: str, r: dict[str, Any]) -> str:
    if not r.get("n"):
        return f"| {name} | 0 | - | - | - |"
    return (f"| {name} | {r['n']} | {r['label_moved']:.1%} | {r['moved']:.1%} | "
            f"{r['mean_probability_drop']:+.3f} |")


def faithfulness_section(metrics: dict[str, Any]) -> list[str]:
    """report.md's section of a run made with --faithfulness."""
    f = metrics.get("faithfulness")
    if not f:
        return []
    agrees = f.get("answer_agrees")
    own = f"; it is the answer's own label for {agrees:.1%} of them" if agrees is not None else ""
    lines = ["", "## Faithfulness", "", f"{f['samples']} answered samples re-scored without each modality they "
             f"bring ({f['task']}). The label tested is the most probable one when the prompt with every modality "
             f"is scored (label first){own}. Label changed: removing the modality changes it; moved: it changes "
             f"or its probability moves by at least {f['move_threshold']}. What a rationale cites is read from its "
             "cue fields and modality words (prompts/rewards/modality_words.yaml), with no judge.", "",
             "| removed | samples | label changed | moved | mean drop of the label's probability |",
             "|---|---|---|---|---|"]
    lines += [_row(m, r) for m, r in f["by_modality"].items()]
    lines += [_row("the modality the rationale cites most", f["cited"]), _row("a modality it does not cite",
                                                                               f["uncited"])]
    if f["explained"]:
        lines += ["", f"Of {f['explained']} answers that cite evidence, {f['cites_absent']:.1%} cite a modality "
                  f"the sample did not bring, and {f['unfaithful']:.1%} are unfaithful (they cite an absent "
                  "modality, or removing what they cite most moves nothing)."]
    else:
        lines += ["", "No answer cites evidence (a label-only template): only the removals by modality apply."]
    return lines


def faithfulness_summary(metrics: dict[str, Any]) -> list[str]:
    f = metrics.get("faithfulness")
    if not f:
        return []
    moved = ", ".join(f"without {m} {r['label_moved']:.0%}" for m, r in f["by_modality"].items())
    line = f"faithfulness: labels changed {moved}"
    if f["explained"]:
        line += (f"; cited {_share(f['cited'])} vs uncited {_share(f['uncited'])} moved; "
                 f"unfaithful rationales {f['unfaithful']:.0%}")
    return [line]


def _share(rates: dict[str, Any]) -> str:
    return f"{rates['moved']:.0%}" if rates.get("n") else "-"
