"""Distillation's pure logic: which hinted answers are kept and where the hint goes in the prompt."""


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
