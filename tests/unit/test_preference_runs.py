"""Pairwise preference over runs and human pairs: verdicts in both orders, position bias, agreement with people,
and one-line errors for bad files (a scripted judge stands in for the model: pure logic only)."""
from __future__ import annotations

import json

import pytest

from mllm_mer.evaluation.preference_runs import description_of, judge_pairs, judge_runs, read_pairs


class ScriptedJudge:
    """A fake judge for unit tests: answers `pick(fields)` for every preference item."""

    def __init__(self, pick):
        self.pick, self.calls = pick, 0

    def ask(self, task, items):
        assert task == "preference"
        self.calls += len(items)
        return [{"better": self.pick(fields)} for fields in items]


TEXTS = {"good": {f"s{i}": f"good description {i}" for i in range(6)},
         "poor": {f"s{i}": f"poor description {i}" for i in range(6)},
         "mid": {f"s{i}": f"mid description {i}" for i in range(4)}}


def _prefers(order):
    def pick(fields):
        first, second = (order.index(fields[k].split()[0]) for k in ("first", "second"))
        return "A" if first < second else "B"
    return pick


def test_a_consistent_judge_ranks_the_systems_in_its_order_without_position_bias():
    result = judge_runs(ScriptedJudge(_prefers(["good", "mid", "poor"])), TEXTS)
    assert list(result["ranking"]) == ["good", "mid", "poor"]
    assert result["verdicts"] == 2 * (6 + 4 + 4) and result["unjudged"] == 0
    assert result["position_bias"] == 0.5 and result["order_consistency"] == 1.0
    for row in result["ranking"].values():
        assert row["interval"][0] <= row["strength"] <= row["interval"][1]


def test_a_judge_that_always_picks_the_first_description_reads_full_bias_and_no_ranking():
    result = judge_runs(ScriptedJudge(lambda fields: "A"), TEXTS)
    assert result["position_bias"] == 1.0 and result["order_consistency"] == 0.0
    strengths = [row["strength"] for row in result["ranking"].values()]
    assert max(strengths) - min(strengths) == pytest.approx(0, abs=1e-6)


def test_agreement_with_people_counts_both_orders_and_unreadable_verdicts_as_misses(tmp_path):
    path = tmp_path / "pairs.jsonl"
    rows = [{"description_a": "good one", "description_b": "poor one", "preferred": "A"},
            {"description_a": "poor two", "description_b": "good two", "preferred": "b"},
            {"description_a": "good three", "description_b": "poor three", "preferred": "B"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = judge_pairs(ScriptedJudge(_prefers(["good", "poor"])), read_pairs(path))
    assert result["agreement_as_shown"] == pytest.approx(2 / 3)  # the third pair's people preferred the poor one
    assert result["agreement_both_orders"] == pytest.approx(2 / 3) and result["order_consistency"] == 1.0
    first = judge_pairs(ScriptedJudge(lambda fields: "A"), read_pairs(path))
    # always "A": as shown it says A (people: A, B, B), swapped it says B
    assert first["position_bias"] == 1.0 and first["agreement_as_shown"] == pytest.approx(1 / 3)
    assert first["agreement_swapped"] == pytest.approx(2 / 3) and first["order_consistency"] == 0.0
    broken = judge_pairs(ScriptedJudge(lambda fields: "neither"), read_pairs(path))
    assert broken["unjudged"] == 6 and broken["agreement_both_orders"] == 0.0


def test_a_pairs_file_without_its_columns_or_with_a_bad_preference_is_refused_in_one_line(tmp_path):
    csv = tmp_path / "pairs.csv"
    csv.write_text("description_a,description_b,winner\nx,y,A\n")
    with pytest.raises(ValueError, match=r"pairs.csv: no column preferred \(has description_a, description_b, winner"):
        read_pairs(csv)
    csv.write_text("description_a,description_b,preferred\nx,y,maybe\n")
    with pytest.raises(ValueError, match="row 1: preferred is 'maybe'"):
        read_pairs(csv)
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_pairs(tmp_path / "absent.jsonl")


def test_a_description_is_the_answer_with_its_rationale_and_cues_and_none_without_a_rationale():
    answer = {"ok": True, "tasks": {"emotion": {"label": "joy"}}, "rationale": "She smiles.",
              "cues": {"visual": "a smile", "vocal": ""}}
    assert description_of(answer) == "(emotion: joy) She smiles. Cues: visual: a smile."
    assert description_of({**answer, "rationale": ""}) is None and description_of({**answer, "ok": False}) is None
