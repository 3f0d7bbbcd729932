"""Evaluation metrics without a model: agreement with scikit-learn, failures and gold labels outside the set."""
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from mllm_mer.stages.metrics import FAILED, classification_metrics


def test_metrics_match_scikit_learn_and_count_failures_as_wrong():
    gold = ["joy", "anger", "joy", "neutral", "anger", "joy"]
    pred = ["joy", "joy", None, "neutral", "anger", "anger"]
    m = classification_metrics(gold, pred, ["neutral", "joy", "anger", "fear"])
    filled = [p or FAILED for p in pred]
    assert m["accuracy"] == pytest.approx(accuracy_score(gold, filled)) == pytest.approx(0.5)
    assert m["weighted_f1"] == pytest.approx(f1_score(gold, filled, labels=["neutral", "joy", "anger"],
                                                      average="weighted"))
    assert m["macro_f1"] == pytest.approx(f1_score(gold, filled, labels=["neutral", "joy", "anger"], average="macro"))
    assert m["uar"] == pytest.approx(balanced_accuracy_score(gold, filled))
    assert m["failure_rate"] == pytest.approx(1 / 6)
    assert m["confusion"]["labels"][-1] == FAILED and sum(map(sum, m["confusion"]["matrix"])) == 6


def test_gold_labels_outside_the_set_or_missing_are_counted_and_shown():
    from mllm_mer.core.labels import load_label_scheme
    from mllm_mer.evaluation.report import summary
    from mllm_mer.evaluation.runner import compute_metrics

    def record(i, gold):
        return {"id": str(i), "gold": gold, "prediction": {"sample_id": str(i), "ok": True,
                                                           "tasks": {"emotion": {"label": "joy"}}}}

    records = [record(0, {"emotion": "joy"}), record(1, {"emotion": "happiness"}), record(2, {}),
               record(3, {"emotion": "banana"})]
    metrics = compute_metrics(records, load_label_scheme("meld"), "manifest")
    assert metrics["gold_issues"]["emotion"] == {"outside_label_set": 1, "missing": 1}  # happiness is a synonym
    assert metrics["tasks"]["emotion"]["n"] == 2
    assert "emotion: 1 gold labels outside the label set and 1 missing: not scored" in summary(metrics)
