"""Pairwise preference by a judge (EmoPrefer / MER-Prefer), over finished runs or a file of human pairs.

    mllm-mer compare RUN_A RUN_B [RUN_C ...] --judge-model M    # which system describes each clip better
    mllm-mer compare --preference-pairs pairs.jsonl --judge-model M   # the judge's agreement with people

Each pair is judged in both orders (A then B, B then A), so position bias is measured, not assumed away;
the systems are ranked by a Bradley-Terry fit with bootstrap intervals (`evaluation.preference`). Verdicts
are cached by content: running the same comparison again asks the judge nothing.
"""
from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mllm_mer.core.paths import user_cache
from mllm_mer.evaluation.described import CACHE, open_judge
from mllm_mer.evaluation.judge import Judge
from mllm_mer.evaluation.preference import Verdict, agreement, position_bias, ranking
from mllm_mer.evaluation.records import read_predictions

PAIR_COLUMNS = ("description_a", "description_b", "preferred")  # a human pairs file's required columns
HUMAN = {"a": "A", "b": "B", "tie": None, "1": "A", "2": "B"}


def description_of(prediction: dict[str, Any]) -> str | None:
    """What a system said of a clip: its labels, rationale and cues (None: a failed or unexplained answer)."""
    if not prediction.get("ok") or not (prediction.get("rationale") or "").strip():
        return None
    labels = ", ".join(f"{task}: {t.get('label')}" for task, t in (prediction.get("tasks") or {}).items())
    cues = "; ".join(f"{m}: {c}" for m, c in (prediction.get("cues") or {}).items() if c)
    return " ".join(x for x in (f"({labels})" if labels else "", prediction["rationale"].strip(),
                                f"Cues: {cues}." if cues else "") if x)


def run_descriptions(run_dir: str | Path) -> dict[str, str]:
    """Sample id -> description of one run (its predictions.jsonl)."""
    path = Path(run_dir) / "predictions.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (is {run_dir} a run directory?)")
    found = {i: d for i, r in read_predictions(path).items() if (d := description_of(r.get("prediction") or {}))}
    if not found:
        raise ValueError(f"{path}: no answer has a rationale to judge (was the run made with a label-only template?)")
    return found


def _winner(verdict: dict[str, Any], first: str, second: str) -> tuple[bool, str | None]:
    """(judged, winner or None for a tie) of one verdict."""
    better = verdict.get("better")
    if "error" in verdict or better not in ("A", "B", "tie"):
        return False, None
    return True, {"A": first, "B": second, "tie": None}[better]


def judge_runs(judge: Judge, texts: dict[str, dict[str, str]]) -> dict[str, Any]:
    """Every pair of systems on every clip both described, in both orders: the verdicts and their summary."""
    asked, shown = [], []
    for a, b in itertools.combinations(texts, 2):
        for sample_id in sorted(set(texts[a]) & set(texts[b])):
            for first, second in ((a, b), (b, a)):
                asked.append({"context": "", "first": texts[first][sample_id], "second": texts[second][sample_id]})
                shown.append((first, second))
    if not asked:
        raise ValueError("the runs share no described clip: nothing to judge")
    return summarise(judged_in_both_orders(judge.ask("preference", asked), shown), list(texts))


def judged_in_both_orders(answers: Sequence[dict[str, Any]], shown: Sequence[tuple[str, str]]
                          ) -> list[tuple[Verdict | None, Verdict | None]]:
    """Consecutive answers (a pair as shown, then swapped) as verdict pairs; None: an unreadable verdict."""
    verdicts = []
    for answer, (first, second) in zip(answers, shown, strict=True):
        judged, winner = _winner(answer, first, second)
        verdicts.append(Verdict(first, second, winner) if judged else None)
    return list(zip(verdicts[::2], verdicts[1::2], strict=True))


def summarise(pairs: Sequence[tuple[Verdict | None, Verdict | None]], systems: list[str]) -> dict[str, Any]:
    """Ranking, position bias and order consistency of verdicts asked in both orders."""
    verdicts = [v for pair in pairs for v in pair if v is not None]
    both = [(x, y) for x, y in pairs if x is not None and y is not None]
    return {"systems": systems, "verdicts": len(verdicts), "unjudged": 2 * len(pairs) - len(verdicts),
            "ties": sum(v.winner is None for v in verdicts), "ranking": ranking(verdicts, systems),
            "position_bias": position_bias(verdicts),
            "order_consistency": sum(x.winner == y.winner for x, y in both) / len(both) if both else float("nan")}


def read_pairs(path: str | Path) -> list[dict[str, Any]]:
    """A human preference file (JSONL, JSON list or CSV): description_a, description_b, preferred (A|B|tie),
    optional context."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--preference-pairs {path}: no such file")
    try:
        if path.suffix.lower() == ".csv":
            import pandas as pd

            rows = pd.read_csv(path, dtype=str, keep_default_na=False).to_dict("records")
        elif path.suffix.lower() == ".json":
            rows = json.loads(path.read_text(encoding="utf-8"))
        else:
            rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"--preference-pairs {path}: not readable as {path.suffix or 'JSONL'} ({error})") from None
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
        raise ValueError(f"--preference-pairs {path}: expected records with {', '.join(PAIR_COLUMNS)}")
    missing = [c for c in PAIR_COLUMNS if c not in rows[0]]
    if missing:
        raise ValueError(f"--preference-pairs {path}: no column {', '.join(missing)} (has {', '.join(rows[0])})")
    for number, row in enumerate(rows, 1):
        if str(row["preferred"]).strip().lower() not in HUMAN:
            raise ValueError(f"--preference-pairs {path}: row {number}: preferred is {row['preferred']!r}, "
                             "not A, B or tie")
    return rows


def judge_pairs(judge: Judge, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The judge's agreement with people on each pair, asked in both orders (a swapped verdict is mapped back
    to A/B); an unreadable verdict counts as disagreeing."""
    asked = []
    for row in rows:
        context = str(row.get("context") or "")
        asked += [{"context": context, "first": str(row["description_a"]), "second": str(row["description_b"])},
                  {"context": context, "first": str(row["description_b"]), "second": str(row["description_a"])}]
    pairs = judged_in_both_orders(judge.ask("preference", asked), [("A", "B"), ("B", "A")] * len(rows))
    people = [HUMAN[str(r["preferred"]).strip().lower()] for r in rows]
    unread = "unreadable"  # agrees with no human answer
    shown = [x.winner if x else unread for x, _ in pairs]
    swapped = [y.winner if y else unread for _, y in pairs]
    summary = summarise(pairs, ["A", "B"])
    return {"pairs": len(rows), "unjudged": summary["unjudged"], "agreement_as_shown": agreement(shown, people),
            "agreement_swapped": agreement(swapped, people),
            "agreement_both_orders": agreement(shown + swapped, people + people),
            "order_consistency": summary["order_consistency"], "position_bias": summary["position_bias"]}


def ranking_lines(result: dict[str, Any]) -> list[str]:
    lines = ["## Pairwise preference (Bradley-Terry)", "",
             "| rank | system | strength [95% CI] | wins | losses |", "|---|---|---|---|---|"]
    for rank, (name, row) in enumerate(result["ranking"].items(), 1):
        low, high = row.get("interval", [float("nan")] * 2)
        lines.append(f"| {rank} | {name} | {row['strength']:+.3f} [{low:+.3f}, {high:+.3f}] | {row['wins']:g} | "
                     f"{row['losses']:g} |")
    lines += ["", f"{result['verdicts']} verdicts ({result['ties']} ties, {result['unjudged']} unreadable), every "
              "pair asked in both orders; strength: log-odds, mean 0; brackets: bootstrap over verdicts."]
    return lines + _bias_lines(result)


def pairs_lines(result: dict[str, Any]) -> list[str]:
    return ["## Agreement with human preferences", "", "| pairs | as shown | swapped | both orders |",
            "|---|---|---|---|", f"| {result['pairs']} | {result['agreement_as_shown']:.4f} | "
            f"{result['agreement_swapped']:.4f} | {result['agreement_both_orders']:.4f} |", "",
            f"{result['unjudged']} verdicts unreadable (counted as disagreeing)."] + _bias_lines(result)


def _bias_lines(result: dict[str, Any]) -> list[str]:
    return [f"position bias: {result['position_bias']:.1%} of decisive verdicts chose the description shown first "
            f"(50%: none); order consistency: {result['order_consistency']:.1%} of pairs got the same verdict in "
            "both orders"]


def judge_preferences(cfg) -> str:
    """`compare` with a judge: a ranking of the runs, or agreement with a human pairs file; writes preference.json
    (and the verdict cache) in --out, else caches verdicts in the user cache."""
    options = cfg.compare
    if not cfg.judge.judge_model:
        raise ValueError("--preference-pairs needs a judge: name it with --judge-model")
    if options.preference_pairs and options.runs:
        raise ValueError("compare takes run directories or --preference-pairs FILE, not both")
    rows = read_pairs(options.preference_pairs) if options.preference_pairs else None
    if rows is None and len(options.runs) < 2:
        raise ValueError("a judged comparison needs at least two run directories (or --preference-pairs FILE)")
    texts = None if rows else {_name(d, options.runs): run_descriptions(d) for d in options.runs}
    folder = Path(options.out) if options.out else user_cache() / "judge"
    with open_judge(cfg.judge, folder / CACHE) as judge:
        result = judge_pairs(judge, rows) if rows else judge_runs(judge, texts)
        result["judge"] = {**judge.identity, "verdicts_asked": judge.calls}
    if options.out:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "preference.json").write_text(json.dumps(result, indent=2) + "\n")
    judge_line = (f"judge: {cfg.judge.judge_model} ({cfg.judge.judge_backend}, id {result['judge']['id']}); "
                  f"verdicts asked of it: {judge.calls} (the rest from the cache {folder / CACHE})")
    return "\n".join([*(pairs_lines(result) if rows else ranking_lines(result)), judge_line])


def _name(run_dir: str, runs: Sequence[str]) -> str:
    """A run's name in the table: its folder name, or its path where two runs share one."""
    name = Path(run_dir).name
    return name if sum(Path(r).name == name for r in runs) == 1 else str(run_dir)
