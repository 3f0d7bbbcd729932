"""The field's reasoning metrics as pure arithmetic: open vocabulary by synonym groups, words from
descriptions, Bradley-Terry rankings with position bias, and selective prediction."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from mllm_mer.evaluation.extraction import extract
from mllm_mer.evaluation.preference import Verdict, bradley_terry, position_bias, ranking, win_matrix
from mllm_mer.evaluation.selective import abstention, risk_coverage
from mllm_mer.evaluation.synonym_groups import read_groups, sample_scores, synonym_metrics, word_list

# -- open vocabulary, synonym groups ------------------------------------------------------------


def test_words_map_to_their_groups_first_word_before_set_precision_and_recall():
    groups = [["joyful", "happy"], ["worried", "anxious"], ["angry"]]
    # gold {happy, worried} -> {joyful, worried}; pred {Joyful, ANXIOUS, angry} -> {joyful, worried, angry}
    precision, recall = sample_scores(["happy", "worried"], ["Joyful", "ANXIOUS", "angry"], groups)
    assert (precision, recall) == (pytest.approx(2 / 3), 1.0)


def test_an_empty_prediction_scores_zero_precision_and_zero_recall():
    assert sample_scores(["happy"], [], [["happy"]]) == (0.0, 0.0)
    assert sample_scores(["happy"], None, [["happy"]]) == (0.0, 0.0)


def test_list_cells_parse_as_released():
    assert word_list("['Happy', 'relieved']") == ["happy", "relieved"]
    assert word_list('["happy", "relieved"]') == ["happy", "relieved"]
    assert word_list("happy, relieved,") == ["happy", "relieved"]
    assert word_list(["happy", "Happy"]) == ["happy"]
    assert word_list(None) == [] and word_list("") == []


def test_a_released_style_grouping_file_reproduces_an_independent_computation(tmp_path):
    gold = {"s1": ["happy", "relieved"], "s2": ["angry"], "s3": ["sad", "tired"], "s4": ["surprised"]}
    pred = {"s1": ["joyful"], "s2": ["furious", "annoyed"], "s3": [], "s4": ["surprised", "amazed"]}
    groups = {"s1": [["happy", "joyful"], ["relieved"]], "s2": [["angry", "furious"], ["annoyed"]],
              "s3": [["sad"], ["tired"]], "s4": [["surprised", "amazed"]]}
    path = tmp_path / "groups.jsonl"
    path.write_text("".join(json.dumps({"id": k, "groups": v}) + "\n" for k, v in groups.items()))
    # by hand: s1 P=1 R=1/2; s2 P=1/2 R=1; s3 0 0; s4 P=1 R=1
    precision, recall = (1 + 0.5 + 0 + 1) / 4, (0.5 + 1 + 0 + 1) / 4
    ids = list(gold)
    result = synonym_metrics(ids, [gold[i] for i in ids], [pred[i] for i in ids], read_groups(path))
    assert result["ov_precision"] == pytest.approx(precision)
    assert result["ov_recall"] == pytest.approx(recall)
    assert result["ov_mean"] == pytest.approx((precision + recall) / 2)
    assert result["grouped"] == 4


@pytest.mark.parametrize("text, error", [("{not json", "not JSON"), ('[{"id": "a"}]', "needs an id and groups")])
def test_an_unreadable_grouping_file_is_a_one_line_error(tmp_path, text, error):
    path = tmp_path / "groups.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=error):
        read_groups(path)


# -- descriptions -> emotion words --------------------------------------------------------------


def test_the_lexicon_finds_stated_emotions_and_folds_inflections():
    assert extract("She speaks angrily; her anger shows. He is angry too.") == ["anger"]
    assert extract("The speaker sounds happy, then visibly worried.") == ["joy", "worry"]
    assert extract("Sadly, he looks sad and a little frightened.") == ["sadness", "fear"]


def test_negated_emotions_are_not_stated_ones():
    assert extract("He is not angry at all.") == []
    assert extract("She never seemed afraid; she was calm.") == ["calm"]
    assert extract("Not sad, but clearly furious.") == ["rage"]
    assert extract("I don't think she is happy.") == []


# -- pairwise preference ------------------------------------------------------------------------


def test_bradley_terry_matches_the_closed_form_of_two_systems():
    verdicts = [Verdict("a", "b", "a")] * 7 + [Verdict("b", "a", "b")] * 3
    theta = bradley_terry(win_matrix(verdicts, ["a", "b"]))
    assert theta[0] - theta[1] == pytest.approx(math.log(7 / 3), abs=1e-6)


def test_bradley_terry_matches_the_classic_iterative_fit_on_three_systems():
    wins = np.array([[0, 6, 8], [4, 0, 7], [2, 3, 0]], dtype=float)
    p = np.ones(3)  # Zermelo's / Hunter's MM iteration, the textbook reference
    for _ in range(5000):
        n = wins + wins.T
        p = wins.sum(axis=1) / np.array([sum(n[i, j] / (p[i] + p[j]) for j in range(3) if j != i) for i in range(3)])
        p /= np.exp(np.log(p).mean())
    assert bradley_terry(wins) == pytest.approx(np.log(p), abs=1e-6)


def test_a_judge_that_always_picks_the_first_answer_reads_full_position_bias():
    verdicts = [Verdict("a", "b", "a"), Verdict("b", "a", "b")] * 5
    assert position_bias(verdicts) == 1.0
    table = ranking(verdicts, ["a", "b"], n_resamples=50)
    assert table["a"]["strength"] == pytest.approx(table["b"]["strength"], abs=1e-6)  # both orders cancel out


# -- selective prediction -----------------------------------------------------------------------


def test_risk_coverage_and_aurc_by_hand():
    confidence = [0.9, 0.8, 0.7, 0.6]
    correct = [True, False, True, False]
    curve = risk_coverage(confidence, correct)
    assert curve["coverage"] == [0.25, 0.5, 0.75, 1.0]
    assert curve["risk"] == pytest.approx([0, 1 / 2, 1 / 3, 1 / 2])
    assert curve["aurc"] == pytest.approx((0 + 1 / 2 + 1 / 3 + 1 / 2) / 4)


def test_abstaining_below_a_rising_threshold_lowers_coverage_and_raises_selective_accuracy():
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0, 1, 400)
    correct = rng.uniform(0, 1, 400) < confidence  # calibrated: right as often as confident
    rows = [abstention(confidence, correct, t) for t in (0.0, 0.3, 0.6, 0.9)]
    coverage = [r["coverage"] for r in rows]
    accuracy = [r["selective_accuracy"] for r in rows]
    assert coverage == sorted(coverage, reverse=True) and coverage[0] == 1.0
    assert accuracy == sorted(accuracy) and accuracy[-1] > accuracy[0] + 0.2


def test_every_run_with_probabilities_reports_aurc_in_its_metrics():
    from mllm_mer.core.labels import load_label_scheme
    from mllm_mer.evaluation.statistics import compute_metrics

    scheme = load_label_scheme("meld")
    labels = scheme.label_sets[0].labels
    rng = np.random.default_rng(1)
    records = []
    for i in range(30):
        p = rng.dirichlet(np.ones(len(labels)))
        best = labels[int(p.argmax())]
        records.append({"id": f"s{i}", "gold": {"emotion": best if i % 3 else labels[0]},
                        "prediction": {"sample_id": f"s{i}", "ok": True, "tasks": {"emotion": {
                            "label": best, "probabilities": dict(zip(labels, p.tolist(), strict=True))}}}})
    metrics = compute_metrics(records, scheme, "meld")["tasks"]["emotion"]
    assert 0 <= metrics["aurc"] <= 1
    assert metrics["risk_coverage"]["coverage"][-1] == 1.0
    assert metrics["risk_coverage"]["risk"][-1] == pytest.approx(1 - metrics["accuracy"])
