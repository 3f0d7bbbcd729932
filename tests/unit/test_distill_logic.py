"""Distillation's pure logic: which hinted answers are kept and where the hint goes in the prompt."""

import pytest


def test_a_hinted_answer_is_kept_exactly_when_it_reaches_gold(meld_spec):
    """The filter's logic on made-up records (pure): wrong teacher rows are replaced by their hinted answer
    only when that answer is the gold label, and dropped otherwise."""
    from mllm_mer.core.types import Prediction, Sample, TaskPrediction
    from mllm_mer.training.distill import _kept_rows

    def answer(sample_id, emotion):
        return Prediction(sample_id, tasks={"emotion": TaskPrediction(emotion), "sentiment": TaskPrediction("neutral")})

    samples = [Sample(id=i, transcript="hi", gold={"emotion": "joy", "sentiment": "neutral"}) for i in "abc"]
    teacher = {"a": {"prediction": answer("a", "joy").to_dict()}, "b": {"prediction": answer("b", "fear").to_dict()},
               "c": {"prediction": answer("c", "fear").to_dict()}}
    hinted = {"b": {"prediction": answer("b", "joy").to_dict(), "kept": True},
              "c": {"prediction": answer("c", "anger").to_dict(), "kept": False}}
    rows, counts = _kept_rows(samples, teacher, hinted, meld_spec, "rationalise", {})
    assert [(r["id"], r["source"], r["labels"]["emotion"]) for r in rows] == [("a", "teacher", "joy"),
                                                                            ("b", "rationalised", "joy")]
    assert counts == {"teacher": 1, "rationalised": 1, "dropped": 1}


def test_the_hint_is_in_the_prompt_only_when_given(meld_spec):
    from mllm_mer.core.types import Sample
    from mllm_mer.prompting import build_prompt

    hinted = build_prompt(Sample(id="h", transcript="Fine.", metadata={"hint": {"emotion": "anger"}}), meld_spec)
    plain = build_prompt(Sample(id="p", transcript="Fine."), meld_spec)
    assert "Hint: the annotated answer is emotion: anger." in hinted.messages[1]["content"][-1]["text"]
    assert "Hint" not in plain.messages[1]["content"][-1]["text"]


def test_a_teachers_reasoning_becomes_the_students_reasoning_target(meld_spec, tmp_path):
    """A teacher that reasoned first (its records' `prediction.reasoning`) leaves its thought in the distilled
    manifest's `reasoning` column; `dataset: distilled` reads it back and SFT with `reasoning_col: reasoning`
    trains the block before the answer. A teacher that answered first leaves the column empty."""
    import json
    from dataclasses import replace

    from mllm_mer.core.types import Prediction, Reasoning, Sample, TaskPrediction
    from mllm_mer.datasets.distilled import load as load_distilled
    from mllm_mer.prompting import build_prompt
    from mllm_mer.training.distill import _kept_rows
    from mllm_mer.training.examples import target_answer

    samples = [Sample(id=i, transcript="Fine.", gold={"emotion": "joy", "sentiment": "positive"}) for i in "ab"]
    thought = {"order": "before", "text": "smiles while saying fine", "tokens": 5, "cut": False}
    teacher = {s.id: {"prediction": Prediction(s.id, tasks={"emotion": TaskPrediction("joy"),
                                                           "sentiment": TaskPrediction("positive")},
                                               reasoning=thought if s.id == "a" else None).to_dict()}
               for s in samples}
    rows, _ = _kept_rows(samples, teacher, {}, meld_spec, "all", {})
    assert [r["reasoning"] for r in rows] == ["smiles while saying fine", None]

    (tmp_path / "distilled.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "labels.yaml").write_text("name: meld\n")
    student = {s.id: s for s in load_distilled(tmp_path, "train").samples}
    prompt = replace(build_prompt(student["a"], meld_spec),
                     reasoning=Reasoning("before", "<reasoning>", "</reasoning>", 32))
    target = target_answer(student["a"], prompt, reasoning_col="reasoning")
    assert target.startswith("smiles while saying fine</reasoning>\n{"), target
    with pytest.raises(ValueError, match="no reasoning text"):
        target_answer(student["b"], prompt, reasoning_col="reasoning")
