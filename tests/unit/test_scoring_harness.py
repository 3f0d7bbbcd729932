"""`mllm-mer score`, label aliases, open-vocabulary and multi-label metrics, bootstrap intervals and the
paired tests of `compare`."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from helpers import MELD_DIR, requires_meld
from sklearn.metrics import accuracy_score, f1_score, recall_score

from mllm_mer.cli import main
from mllm_mer.core.emotion_wheels import load_wheels
from mllm_mer.core.labels import load_label_scheme, with_label_map
from mllm_mer.core.parsing import parse_answer
from mllm_mer.evaluation.set_metrics import multilabel_metrics, open_vocab_metrics
from mllm_mer.evaluation.uncertainty import classification_intervals, mcnemar

MELD_LABELS = ["neutral", "joy", "sadness", "anger", "surprise", "fear", "disgust"]


def fake_system(seed: int = 0, rows: int | None = None) -> pd.DataFrame:
    """Another system's per-utterance MELD test predictions: a seeded fake predictor with probabilities."""
    df = pd.read_csv(MELD_DIR / "test_sent_emo.csv")[: rows or None]
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(len(df), 7))
    logits[np.arange(len(df)), df.Emotion.map(MELD_LABELS.index).to_numpy()] += 1.2
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    out = pd.DataFrame({"Dialogue_ID": df.Dialogue_ID, "Utterance_ID": df.Utterance_ID, "Speaker": df.Speaker,
                        "gold": df.Emotion, "pred": [MELD_LABELS[i] for i in p.argmax(1)]})
    for i, label in enumerate(MELD_LABELS):
        out[f"p_{label}"] = p[:, i]
    return out


def score(tmp_path, file, out, *flags) -> tuple[int, dict]:
    code = main(["score", str(file), "--dataset", "meld", "--data-dir", str(MELD_DIR), "--split", "test",
                 "--pred-id-col", "dia{Dialogue_ID}_utt{Utterance_ID}", "--pred-col", "pred",
                 "--out", str(tmp_path / out), *flags])
    metrics_file = tmp_path / out / "metrics.json"
    return code, json.loads(metrics_file.read_text()) if code == 0 else {}


@requires_meld
def test_a_published_table_is_reproduced_exactly_as_sklearn_computes_it(tmp_path, capsys):
    from mllm_mer.stages.calibration import calibration_metrics

    frame = fake_system()
    assert len(frame) == 2610
    frame.to_csv(tmp_path / "system.csv", index=False)
    code, metrics = score(tmp_path, tmp_path / "system.csv", "scored")
    assert code == 0
    m = metrics["tasks"]["emotion"]
    assert m["n"] == 2610 and not metrics["coverage"]["partial"]
    assert m["accuracy"] == pytest.approx(accuracy_score(frame.gold, frame.pred), abs=1e-9)
    assert m["weighted_f1"] == pytest.approx(f1_score(frame.gold, frame.pred, average="weighted"), abs=1e-9)
    assert m["uar"] == pytest.approx(recall_score(frame.gold, frame.pred, average="macro"), abs=1e-9)
    probs = frame[[f"p_{label}" for label in MELD_LABELS]].to_numpy()
    expected = calibration_metrics(probs, frame.gold.map(MELD_LABELS.index).to_numpy())
    assert m["ece"] == pytest.approx(expected["ece"], abs=1e-9) and m["n_scored"] == 2610
    lo, hi = m["intervals"]["accuracy"]
    assert lo < m["accuracy"] < hi
    printed = capsys.readouterr().out
    assert "| emotion |" in printed and "scored 2610 of 2610 samples of meld/test" in printed
    run = json.loads((tmp_path / "scored" / "run.json").read_text())
    assert len(run["fingerprint"]["sha256"]) == 64 and run["fingerprint"]["pred_id_col"].startswith("dia{")
    for name in ("report.md", "confusion.png", "reliability.png", "predictions.jsonl"):
        assert (tmp_path / "scored" / name).is_file()
    assert "[" in (tmp_path / "scored" / "report.md").read_text()  # intervals in the report


@requires_meld
def test_out_of_set_predictions_are_named_counted_and_wrong_unless_mapped(tmp_path):
    frame = fake_system(rows=200)
    frame.loc[:6, "pred"] = "Anxiety "
    frame.to_csv(tmp_path / "system.csv", index=False)
    code, metrics = score(tmp_path, tmp_path / "system.csv", "plain")
    assert code == 0
    assert metrics["scored"]["predictions_outside_label_set"] == {"Anxiety": 7}
    wrong = frame.pred.where(frame.pred != "Anxiety ", "<outside>")
    assert metrics["tasks"]["emotion"]["accuracy"] == pytest.approx(accuracy_score(frame.gold, wrong))
    assert "scored 200 of 2610 samples" in " ".join(metrics["scored"]["summary"])
    code, mapped = score(tmp_path, tmp_path / "system.csv", "mapped", "--label-map", "anxiety=fear")
    assert code == 0 and mapped["scored"]["predictions_outside_label_set"] == {}
    as_fear = frame.pred.where(frame.pred != "Anxiety ", "fear")
    assert mapped["tasks"]["emotion"]["accuracy"] == pytest.approx(accuracy_score(frame.gold, as_fear))
    assert mapped["tasks"]["emotion"]["per_class"]["fear"]["precision"] > 0 or (frame.gold[:7] != "fear").all()


@requires_meld
def test_media_names_match_and_missing_rows_are_counted_or_wrong(tmp_path):
    frame = fake_system(rows=100)
    keyed = pd.DataFrame({"clip": [f"clips/dia{d}_utt{u}.mp4" for d, u in zip(frame.Dialogue_ID, frame.Utterance_ID,
                                                                           strict=True)], "label": frame.pred})
    keyed = pd.concat([keyed, pd.DataFrame({"clip": ["dia9999_utt0.mp4"], "label": ["joy"]})])
    keyed.to_json(tmp_path / "system.jsonl", orient="records", lines=True)
    base = ["score", str(tmp_path / "system.jsonl"), "--dataset", "meld", "--data-dir", str(MELD_DIR), "--split",
            "test", "--pred-id-col", "clip", "--pred-col", "label"]
    assert main([*base, "--out", str(tmp_path / "skip")]) == 0
    skip = json.loads((tmp_path / "skip" / "metrics.json").read_text())
    assert skip["tasks"]["emotion"]["n"] == 100 and skip["coverage"] == {"answered": 100, "of": 2610, "partial": True}
    assert skip["scored"]["unmatched_predictions"] == 1 and skip["scored"]["samples_without_prediction"] == 2510
    assert main([*base, "--out", str(tmp_path / "wrong"), "--missing", "wrong"]) == 0
    wrong = json.loads((tmp_path / "wrong" / "metrics.json").read_text())
    hits = int(np.sum(frame.gold == frame.pred))
    assert wrong["tasks"]["emotion"]["n"] == 2610
    assert wrong["tasks"]["emotion"]["accuracy"] == pytest.approx(hits / 2610)
    assert wrong["failures_by_kind"]["missing"] == 2510


@requires_meld
def test_bad_columns_and_files_get_one_line_errors(tmp_path, capsys):
    fake_system(rows=5).to_csv(tmp_path / "system.csv", index=False)
    code = main(["score", str(tmp_path / "system.csv"), "--dataset", "meld", "--data-dir", str(MELD_DIR),
                 "--split", "test", "--pred-id-col", "dia{Dialogue_ID}_utt{Utterance_ID}", "--pred-col", "nope",
                 "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2 and "no column 'nope' for --pred-col" in err and len(err.strip().splitlines()) == 1
    assert main(["score", str(tmp_path / "system.csv"), "--dataset", "meld", "--data-dir", str(MELD_DIR),
                 "--split", "test", "--out", str(tmp_path / "x")]) == 2
    assert "no column 'id' for --pred-id-col" in capsys.readouterr().err
    (tmp_path / "bad.txt").write_text("x")
    assert main(["score", str(tmp_path / "bad.txt"), "--dataset", "meld", "--data-dir", str(MELD_DIR),
                 "--out", str(tmp_path / "y")]) == 2
    assert "predictions must be" in capsys.readouterr().err


def test_label_yaml_aliases_fold_case_and_whitespace(tmp_path):
    (tmp_path / "three.yaml").write_text(
        "name: three\ntasks:\n  - task: emotion\n    labels: [positive, negative, neutral]\n"
        "    aliases: {joy: positive, 'Very  Happy': positive, sadness: negative, anger: negative, fear: negative,\n"
        "              disgust: negative, surprise: positive}\n")
    ls = load_label_scheme(tmp_path / "three.yaml").task("emotion")
    assert ls.normalise(" very   happy ") == "positive" and ls.normalise("ANGER") == "negative"
    mapped = with_label_map(load_label_scheme("meld"), ["Big  Worry=fear"]).task("emotion")
    assert mapped.normalise("big worry") == "fear"
    with pytest.raises(ValueError, match="--label-map"):
        with_label_map(load_label_scheme("meld"), ["x=banana"])


@requires_meld
def test_a_run_is_rescored_under_another_label_set_without_a_model(tmp_path):
    frame = fake_system(rows=120)
    frame.to_csv(tmp_path / "system.csv", index=False)
    assert score(tmp_path, tmp_path / "system.csv", "seven")[0] == 0
    (tmp_path / "three.yaml").write_text(
        "name: three\ntasks:\n  - task: emotion\n    labels: [positive, negative, neutral]\n"
        "    aliases: {joy: positive, surprise: positive, sadness: negative, anger: negative, fear: negative,\n"
        "              disgust: negative}\n")
    assert main(["score", str(tmp_path / "seven"), "--labels", str(tmp_path / "three.yaml"),
                 "--out", str(tmp_path / "three")]) == 0
    metrics = json.loads((tmp_path / "three" / "metrics.json").read_text())
    collapse = {"joy": "positive", "surprise": "positive", "neutral": "neutral"}
    gold, pred = (frame[c].map(lambda x: collapse.get(x, "negative")) for c in ("gold", "pred"))
    assert metrics["tasks"]["emotion"]["accuracy"] == pytest.approx(accuracy_score(gold, pred))
    assert metrics["run"]["mode"] == "rescored"


def test_open_vocabulary_metrics_match_hand_computed_values():
    wheels = load_wheels()
    # exact sets; synonyms (happy -> joy, furious -> rage -> anger); a word outside the vocabulary; an empty answer
    gold = [["joy"], ["anger"], ["sadness"], ["fear"]]
    pred = [["joy"], ["furious", "happy"], ["sad", "blorp"], []]
    m = open_vocab_metrics(gold, pred, wheels)
    # per sample (every wheel alike here): P = 1, 1/2, 1/2, 0; R = 1, 1, 1, 0
    precision, recall = (1 + 0.5 + 0.5 + 0) / 4, 3 / 4
    for wheel in ("plutchik", "parrott", "ekman"):
        assert m["per_wheel"][wheel]["precision"] == pytest.approx(precision)
        assert m["per_wheel"][wheel]["recall"] == pytest.approx(recall)
    assert m["ov_f"] == pytest.approx(2 * precision * recall / (precision + recall))
    assert m["hit_rate"] == pytest.approx(3 / 4)
    assert m["empty_answers"] == 1 and m["words_outside_vocabulary"] == {"blorp": 1}
    # wheels differ: love is joy on Plutchik and Ekman, its own sector on Parrott
    m = open_vocab_metrics([["joy"]], [["love"]], wheels)
    assert m["per_wheel"]["parrott"]["f"] == 0 and m["per_wheel"]["plutchik"]["f"] == 1
    assert m["ov_f"] == pytest.approx(2 / 3)


def test_open_and_multi_label_answers_parse_as_lists_and_schema_allows_lists():
    from mllm_mer.prompting import answer_schema

    ls = load_label_scheme("open").label_sets[0]
    schema = answer_schema((ls,), with_rationale=False)["properties"]["emotion"]
    assert schema["type"] == "array" and "joy" in schema["items"]["enum"] and schema["maxItems"] == 3
    p = parse_answer('{"emotion": ["Happy", "surprise", "happy"]}', (ls,), "s")
    assert p.ok and p.tasks["emotion"].labels == ["joy", "surprise"]
    assert not parse_answer('{"emotion": []}', (ls,), "s").ok
    from mllm_mer.core.labels import check_list_answers

    with pytest.raises(ValueError, match="--mode score"):
        check_list_answers(load_label_scheme("open"), True)


def test_multi_label_metrics_match_sklearn():
    from sklearn.preprocessing import MultiLabelBinarizer

    labels = ["joy", "anger", "fear", "sadness"]
    rng = np.random.default_rng(1)
    gold = [sorted(set(rng.choice(labels, size=rng.integers(1, 3)))) for _ in range(40)]
    pred = [sorted(set(rng.choice(labels, size=rng.integers(1, 3)))) for _ in range(40)]
    m = multilabel_metrics(gold, pred, labels)
    binarizer = MultiLabelBinarizer(classes=labels)
    y, p = binarizer.fit_transform(gold), binarizer.transform(pred)
    assert m["subset_accuracy"] == pytest.approx(accuracy_score(y, p))
    assert m["micro_f1"] == pytest.approx(f1_score(y, p, average="micro"))
    assert m["macro_f1"] == pytest.approx(f1_score(y, p, average="macro"))


def test_bootstrap_interval_contains_the_truth_and_narrows_with_n():
    rng = np.random.default_rng(3)
    widths = []
    for n in (100, 2000):
        gold = ["a"] * n
        predicted = ["a" if rng.random() < 0.7 else "b" for _ in range(n)]
        lo, hi = classification_intervals(gold, predicted, ["a", "b"])["accuracy"]
        assert lo <= 0.7 <= hi
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 2
    again = classification_intervals(gold, predicted, ["a", "b"])
    assert again["accuracy"] == [lo, hi]  # seeded: the same interval every time


@requires_meld
def test_compare_reports_mcnemar_equal_to_scipy_and_cannot_tell_runs_apart(tmp_path, capsys):
    from scipy.stats import binomtest

    from mllm_mer.evaluation.comparison import compare_runs, paired_test

    first = fake_system(rows=40)
    second = first.copy()
    wrong = first.index[first.pred != first.gold][:3]
    second.loc[wrong, "pred"] = second.loc[wrong, "gold"]  # b right where a was wrong, on 3 of 40
    assert (first.pred != second.pred).sum() == 3
    for name, frame in (("a", first), ("b", second)):
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
        assert score(tmp_path, tmp_path / f"{name}.csv", name)[0] == 0
    found = paired_test(tmp_path / "a", tmp_path / "b", "emotion")
    assert found["n"] == 40
    expected = binomtest(0, 3, 0.5).pvalue  # 0.25: every discordant pair favours b
    assert found["mcnemar"] == {"only_a_right": 0, "only_b_right": 3, "p_value": pytest.approx(expected, abs=1e-12)}
    assert mcnemar([True, False], [True, False])["p_value"] == 1.0
    table = compare_runs([tmp_path / "a", tmp_path / "b"])
    row = next(line for line in table.splitlines() if line.startswith("| emotion | a | b | 40 |"))
    assert f"| {expected:.4g} |" in row and row.endswith("| cannot be told apart |")
    assert "McNemar" in table and "[" in table


def test_weighted_confusion_formulas_equal_the_sklearn_point_estimates():
    from mllm_mer.evaluation.uncertainty import confusion_stat
    from mllm_mer.stages.metrics import classification_metrics

    rng = np.random.default_rng(5)
    labels = ["a", "b", "c", "d"]
    gold = list(rng.choice(labels[:3], size=300))  # d never gold: outside the averages, as in sklearn
    predicted = [str(x) if rng.random() > 0.1 else None for x in rng.choice(labels, size=300)]
    expected = classification_metrics(gold, predicted, labels)
    index = {label: i for i, label in enumerate(labels)}
    g = np.array([index[x] for x in gold])
    p = np.array([index.get(x, 4) if x else 4 for x in predicted])
    got = confusion_stat(g, p, 4, np.isin(np.arange(4), g))(np.ones(300))
    for key in ("accuracy", "weighted_f1", "macro_f1", "uar"):
        assert got[key] == pytest.approx(expected[key], abs=1e-12)


def test_gold_labels_that_map_to_nothing_are_reported_by_name_and_count():
    from mllm_mer.evaluation.report import summary
    from mllm_mer.evaluation.statistics import compute_metrics

    def record(i, gold):
        return {"id": str(i), "gold": {"emotion": gold}, "prediction": {"sample_id": str(i), "ok": True,
                                                                        "tasks": {"emotion": {"label": "joy"}}}}

    records = [record(0, "joy"), record(1, "Happiness"), record(2, "banana"), record(3, "banana"), record(4, "meh")]
    metrics = compute_metrics(records, load_label_scheme("meld"), "manifest")
    assert metrics["tasks"]["emotion"]["gold_outside_names"] == {"banana": 2, "meh": 1}
    assert "emotion: gold labels outside the label set: banana 2, meh 1" in summary(metrics)


@requires_meld
def test_tsv_with_a_json_probability_column_and_a_json_mapping_file(tmp_path):
    frame = fake_system(rows=60)
    ids = [f"dia{d}_utt{u}" for d, u in zip(frame.Dialogue_ID, frame.Utterance_ID, strict=True)]
    probs = [json.dumps({label.upper(): float(frame[f"p_{label}"].iloc[i]) for label in MELD_LABELS})
             for i in range(len(frame))]
    pd.DataFrame({"id": ids, "pred": frame.pred, "probs": probs}).to_csv(tmp_path / "s.tsv", sep="\t", index=False)
    base = ["score", "--dataset", "meld", "--data-dir", str(MELD_DIR), "--split", "test"]
    assert main([*base, str(tmp_path / "s.tsv"), "--prob-col", "probs", "--out", str(tmp_path / "tsv")]) == 0
    tsv = json.loads((tmp_path / "tsv" / "metrics.json").read_text())["tasks"]["emotion"]
    assert tsv["n_scored"] == 60 and "ece" in tsv
    (tmp_path / "s.json").write_text(json.dumps(dict(zip(ids, frame.pred, strict=True))))
    assert main([*base, str(tmp_path / "s.json"), "--out", str(tmp_path / "json")]) == 0
    plain = json.loads((tmp_path / "json" / "metrics.json").read_text())["tasks"]["emotion"]
    assert plain["accuracy"] == pytest.approx(tsv["accuracy"]) == pytest.approx(accuracy_score(frame.gold, frame.pred))


def test_evaluate_label_map_aliases_the_scheme_and_names_it_only_when_given():
    from mllm_mer.config import MediaConfig, ModelConfig, PromptConfig
    from mllm_mer.pipeline.resolve import resolve_prompt

    plain = resolve_prompt(ModelConfig(model="m"), PromptConfig(labels="meld"), MediaConfig())
    assert plain.scheme.name == "meld"  # the run's identity is unchanged without a map
    mapped = resolve_prompt(ModelConfig(model="m"), PromptConfig(labels="meld", label_map=["Anxiety=fear"]),
                            MediaConfig())
    assert mapped.scheme.task("emotion").normalise("anxiety") == "fear"
    assert mapped.scheme.name == "meld (label map anxiety=fear)"
