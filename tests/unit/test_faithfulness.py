"""Faithfulness from re-scored records: removals by modality, what a rationale cites against what it does not,
rationales that cite absent modalities, and the report's section."""
from __future__ import annotations

import pytest

from mllm_mer.evaluation.faithfulness import cited_weights, faithfulness_section, faithfulness_statistics

JOY = {"joy": 0.8, "anger": 0.2}
ANGER = {"joy": 0.3, "anger": 0.7}
JOY_WEAKER = {"joy": 0.6, "anger": 0.4}


def _record(rationale, cues, removed):
    """An answered record re-scored without each of `removed` (modality -> its distribution)."""
    scored = {"all": {"emotion": JOY}, **{f"-{m}": {"emotion": d} for m, d in removed.items()}}
    return {"id": "x", "prediction": {"ok": True, "tasks": {"emotion": {"label": "joy"}}, "rationale": rationale,
                                      "cues": cues, "extras": {"faithfulness": {"present": list(removed),
                                                                                "scored": scored}}}}


def test_what_a_rationale_cites_is_weighed_by_its_cue_fields_and_modality_words():
    weights = cited_weights({"rationale": "She smiles; her voice is loud and her face bright.",
                             "cues": {"visual": "a smile", "vocal": "", "lexical": "says great"}})
    assert weights == {"video": 1 + 3, "audio": 2, "text": 1}  # smile(s), face; voice, loud; one lexical cue
    assert cited_weights({"rationale": None, "cues": {}}) == {}


def test_removals_by_modality_cited_against_uncited_and_unfaithful_rationales():
    records = [
        # cites the video most; removing it flips the label; removing the text moves nothing
        _record("Her face shows a smile.", {"visual": "a smile"}, {"video": ANGER, "text": JOY}),
        # cites the video, but removing it moves nothing, while the uncited text matters: unfaithful
        _record("A frown on her face.", {"visual": "frown"}, {"video": JOY, "text": ANGER}),
        # cites a voice the sample did not bring: unfaithful
        _record("Her voice trembles.", {"vocal": "trembling"}, {"video": JOY_WEAKER, "text": JOY}),
        # a label-only answer: re-scored by modality, but it makes no claim
        _record(None, {}, {"video": ANGER, "text": JOY}),
    ]
    stats = faithfulness_statistics(records, "emotion")
    assert stats["samples"] == 4 and stats["explained"] == 3
    assert stats["by_modality"]["video"]["label_moved"] == pytest.approx(2 / 4)
    assert stats["by_modality"]["video"]["moved"] == pytest.approx(3 / 4)  # the 0.2 drop counts as moved
    assert stats["by_modality"]["text"]["label_moved"] == pytest.approx(1 / 4)
    assert stats["cited"] == {"n": 2, "label_moved": 0.5, "moved": 0.5, "mean_probability_drop": pytest.approx(0.25)}
    assert stats["uncited"]["n"] == 4 and stats["uncited"]["label_moved"] == pytest.approx(1 / 4)
    assert stats["cites_absent"] == pytest.approx(1 / 3) and stats["unfaithful"] == pytest.approx(2 / 3)
    section = "\n".join(faithfulness_section({"faithfulness": stats}))
    assert "| video | 4 | 50.0% | 75.0% |" in section and "66.7% are unfaithful" in section
    # what the numbers rest on is said beside them: the full prompt's label (here every answer's own), no judge
    assert stats["answer_agrees"] == 1.0 and stats["judge"] is None and "with no judge" in section
    assert "modality_words.yaml" in stats["cited_from"]
    assert "answer's own label for 100.0%" in section


def test_a_run_without_re_scored_records_has_no_faithfulness_entry():
    assert faithfulness_statistics([{"id": "x", "prediction": {"ok": True}}], "emotion") is None
    assert faithfulness_section({}) == []
