"""The comparison of answer orders (`evaluate --compare-orders`) from records, counted by hand."""
import pytest

from mllm_mer.core.labels import load_label_scheme
from mllm_mer.evaluation.orders import order_section, order_statistics, order_summary


def _record(gold, first, reasoned, ok=True):
    dist = {"anger": 0.1, "joy": 0.1, "neutral": 0.1}

    def probs(label):
        return {**dist, label: 0.8} if label else None

    tasks = {"emotion": {"label": reasoned, "probabilities": probs(reasoned)}} if ok else {}
    return {"gold": {"emotion": gold},
            "prediction": {"ok": ok, "tasks": tasks,
                           "reasoning": {"order": "before", "text": "...", "tokens": 3, "cut": False,
                                         "label_first": {"emotion": {"label": first,
                                                                     "probabilities": probs(first)}}}}}


def test_changes_are_counted_to_right_and_to_wrong_on_the_same_samples():
    records = [_record("anger", "joy", "anger"),  # changed, to right
               _record("joy", "joy", "neutral"),  # changed, to wrong
               _record("neutral", "anger", "joy"),  # changed, still wrong
               _record("anger", "anger", "anger"),  # kept
               _record("joy", "joy", None, ok=False),  # the reasoned answer failed: wrong, not "changed"
               {"gold": {"emotion": "joy"}, "prediction": {"ok": True, "tasks": {}}}]  # no label-first: not compared
    stats = order_statistics(records, load_label_scheme("meld"))
    m = stats["tasks"]["emotion"]
    assert stats["order"] == "before"
    assert (m["n"], m["changed"], m["changed_to_right"], m["changed_to_wrong"], m["failed_after_reasoning"]) == \
        (5, 3, 1, 1, 1)
    assert m["accuracy"] == {"label_first": pytest.approx(3 / 5), "reasoned": pytest.approx(2 / 5)}
    assert m["ece"]["n_scored"] == 4 and m["ece"]["label_first"] is not None
    metrics = {"orders": stats}
    assert "changed 3 of 5 labels (1 to right, 1 to wrong)" in order_summary(metrics)[0]
    assert any(line.startswith("| emotion | before | 0.4000") for line in order_section(metrics))


def test_runs_without_label_first_answers_report_nothing():
    plain = [{"gold": {"emotion": "joy"}, "prediction": {"ok": True, "tasks": {"emotion": {"label": "joy"}}}}]
    assert order_statistics(plain, load_label_scheme("meld")) is None
    assert order_summary({}) == [] and order_section({}) == []
