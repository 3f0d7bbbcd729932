"""`mllm-mer score` on descriptions and open-vocabulary answers, as a user types it: words extracted from
free text, the OV-MERD set metrics under a released grouping file, abstention, and one-line errors."""
from __future__ import annotations

import json

import pytest
from helpers import MELD_DIR, requires_meld

from mllm_mer.cli import main

GOLD = [("s1", "['happy', 'relieved']"), ("s2", "['angry']"), ("s3", '["sad", "tired"]'), ("s4", "surprised")]
DESCRIPTIONS = {"s1": "She beams, joyful at the news.", "s2": "His voice rises: he is furious, and clearly annoyed.",
                "s3": "He is not sad; the face is blank.", "s4": "Eyes wide, she sounds surprised and amazed."}
GROUPS = {"s1": [["happy", "joy", "joyful"], ["relieved"]], "s2": [["angry", "rage", "furious"], ["annoyance"]],
          "s3": [["sad"], ["tired"]], "s4": [["surprised", "surprise", "amazement"]]}


@pytest.fixture
def corpus(tmp_path):
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps({"id": i, "text": "...", "label": g}) + "\n" for i, g in GOLD))
    predictions = tmp_path / "descriptions.jsonl"
    predictions.write_text("".join(json.dumps({"id": i, "description": d}) + "\n" for i, d in DESCRIPTIONS.items()))
    groups = tmp_path / "groups.jsonl"
    groups.write_text("".join(json.dumps({"id": i, "groups": g}) + "\n" for i, g in GROUPS.items()))
    return manifest, predictions, groups


def _score(tmp_path, manifest, predictions, *flags) -> int:
    return main(["score", str(predictions), "--dataset", "manifest", "--data-dir", str(manifest), "--labels", "open",
                 "--out", str(tmp_path / "run"), *flags])


def test_descriptions_are_scored_by_the_words_they_state_under_released_synonym_groups(tmp_path, corpus):
    manifest, predictions, groups = corpus
    assert _score(tmp_path, manifest, predictions, "--pred-text-col", "description", "--synonym-groups",
                  str(groups)) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    found = metrics["tasks"]["emotion"]["synonym_groups"]
    # By hand: s1 {joy}->{happy} vs {happy, relieved}: P 1, R 1/2; s2 {rage, annoyance} vs {angry}: P 1/2, R 1;
    # s3 "not sad" states nothing: 0, 0; s4 {surprise, amazement} -> {surprised}: 1, 1.
    assert found["ov_precision"] == pytest.approx((1 + 0.5 + 0 + 1) / 4)
    assert found["ov_recall"] == pytest.approx((0.5 + 1 + 0 + 1) / 4)
    assert found["ov_mean"] == pytest.approx(0.625) and found["groups_from"] == "file groups.jsonl"
    records = [json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    by_id = {r["id"]: r["prediction"] for r in records}
    assert by_id["s2"]["tasks"]["emotion"]["labels"] == ["rage", "annoyance"]
    assert not by_id["s3"]["ok"] and "no emotion word" in by_id["s3"]["error"]
    report = (tmp_path / "run" / "report.md").read_text()
    assert "synonym groups from file groups.jsonl (4 of 4 samples grouped)" in report and "0.6250" in report
    run = json.loads((tmp_path / "run" / "run.json").read_text())["fingerprint"]
    assert run["pred_col"] == "description" and run["extract"] == "lexicon"


@pytest.mark.parametrize("flags, message", [
    (["--pred-text-col", "nope"], "no column 'nope' for --pred-col"),
    (["--pred-text-col", "description", "--synonym-groups", "{missing}"], "--synonym-groups"),
    (["--pred-text-col", "description", "--extract", "judge"], "--extract judge needs a judge"),
    (["--pred-text-col", "description", "--judge-model", "{missing}"], "the judge cannot load"),
])
def test_bad_scoring_options_get_one_line_errors(tmp_path, corpus, capsys, flags, message):
    manifest, predictions, _ = corpus
    flags = [f.replace("{missing}", str(tmp_path / "absent")) for f in flags]
    assert _score(tmp_path, manifest, predictions, *flags) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "Traceback" not in err[0]


def test_a_closed_label_set_refuses_descriptions_and_says_how(tmp_path, corpus, capsys):
    manifest, predictions, _ = corpus
    code = main(["score", str(predictions), "--dataset", "manifest", "--data-dir", str(manifest), "--labels", "meld",
                 "--pred-text-col", "description", "--out", str(tmp_path / "run")])
    assert code == 2 and "--labels open" in capsys.readouterr().err


@requires_meld
def test_abstaining_below_a_threshold_through_score_lowers_coverage_and_raises_selective_accuracy(tmp_path):
    import numpy as np
    import pandas as pd

    labels = ["neutral", "joy", "sadness", "anger", "surprise", "fear", "disgust"]
    df = pd.read_csv(MELD_DIR / "test_sent_emo.csv")
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(len(df), 7))
    logits[np.arange(len(df)), df.Emotion.map(labels.index).to_numpy()] += 1.2
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    system = pd.DataFrame({"id": [f"dia{d}_utt{u}" for d, u in zip(df.Dialogue_ID, df.Utterance_ID, strict=True)],
                           "pred": [labels[i] for i in p.argmax(1)]})
    for i, label in enumerate(labels):
        system[f"p_{label}"] = p[:, i]
    system.to_csv(tmp_path / "system.csv", index=False)
    rows = []
    for threshold in ("0.2", "0.4", "0.6"):
        out = tmp_path / f"t{threshold}"
        assert main(["score", str(tmp_path / "system.csv"), "--dataset", "meld", "--data-dir", str(MELD_DIR),
                     "--split", "test", "--abstain-below", threshold, "--out", str(out)]) == 0
        rows.append(json.loads((out / "metrics.json").read_text())["tasks"]["emotion"])
    coverage = [r["abstention"]["coverage"] for r in rows]
    selective = [r["abstention"]["selective_accuracy"] for r in rows]
    assert coverage[0] > coverage[1] > coverage[2] and selective[0] < selective[1] < selective[2]
    assert selective[0] >= rows[0]["accuracy"] and 0 < rows[0]["aurc"] < 1
    report = (tmp_path / "t0.6" / "report.md").read_text()
    assert "## Selective prediction" in report and f"| emotion | {rows[2]['aurc']:.4f} | 0.60 |" in report


def test_compare_shows_aurc_and_refuses_numbers_from_different_judges_unless_asked(tmp_path, corpus, capsys):
    manifest, predictions, groups = corpus
    runs = []
    for name, judge in (("a", {"model": "judge-a", "id": "aaaa"}), ("b", {"model": "judge-b", "id": "bbbb"})):
        out = tmp_path / name
        assert main(["score", str(predictions), "--dataset", "manifest", "--data-dir", str(manifest), "--labels",
                     "open", "--pred-text-col", "description", "--synonym-groups", str(groups), "--out",
                     str(out)]) == 0
        metrics = json.loads((out / "metrics.json").read_text())
        (out / "metrics.json").write_text(json.dumps({**metrics, "judge": judge}))  # as a judged scoring writes it
        runs.append(str(out))
    capsys.readouterr()
    assert main(["compare", *runs]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "different judges" in err[0] and "judge-a aaaa" in err[0] and "--mixed-judges" in err[0]
    assert main(["compare", *runs, "--mixed-judges"]) == 0
    assert "| AURC |" in capsys.readouterr().out
