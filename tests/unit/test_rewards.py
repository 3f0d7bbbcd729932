"""GRPO's rewards on hand-made completions (pure functions: no model)."""
import json
from dataclasses import replace

import pytest

from mllm_mer.core.types import LabelSet, Reasoning
from mllm_mer.training.rewards import (
    Asked,
    RewardOptions,
    absent_claims,
    correct,
    grounded,
    length,
    reasoning_length,
    reasoning_match,
    score,
    well_formed,
)

EMOTION = LabelSet("emotion", ("neutral", "joy", "sadness", "anger", "surprise", "fear", "disgust"),
                   synonyms={"happy": "joy"})
SENTIMENT = LabelSet("sentiment", ("neutral", "positive", "negative"))
TEXT_ONLY = Asked((EMOTION,), {"emotion": "anger"}, shown=("lexical",))
BOTH = Asked((EMOTION, SENTIMENT), {"emotion": "anger", "sentiment": "negative"},
             shown=("visual", "vocal", "lexical"))
PLAIN = RewardOptions()


def answer(**fields) -> str:
    return json.dumps(fields)


@pytest.mark.parametrize("text, expected", [
    (answer(emotion="anger"), 1.0),
    (answer(emotion="Anger."), 1.0),  # normalised as the parser does
    (answer(emotion="joy"), 0.0),
    (answer(emotion="rage"), 0.0),  # outside the set
    ('{"emotion": "anger"', 0.0),  # malformed JSON
    ("", 0.0),
])
def test_correct_is_exact_per_task(text, expected):
    assert correct(text, TEXT_ONLY, PLAIN) == expected


def test_correct_is_the_mean_over_tasks():
    assert correct(answer(emotion="anger", sentiment="positive"), BOTH, PLAIN) == 0.5
    assert correct(answer(emotion="anger", sentiment="negative"), BOTH, PLAIN) == 1.0


def test_partial_credit_by_wheel_sector_and_by_valence():
    disgust = answer(emotion="disgust")
    assert correct(disgust, TEXT_ONLY, PLAIN) == 0.0
    # Plutchik puts disgust and anger in different sectors; their valence is the same.
    assert correct(disgust, TEXT_ONLY, RewardOptions(similarity="wheel", wheel="plutchik")) == 0.0
    assert correct(disgust, TEXT_ONLY, RewardOptions(similarity="valence", partial_credit=0.25)) == 0.25
    assert correct(answer(emotion="joy"), TEXT_ONLY, RewardOptions(similarity="valence")) == 0.0
    assert correct(answer(emotion="surprise"), TEXT_ONLY, RewardOptions(similarity="valence")) == 0.0
    # Parrott files disgust under anger.
    assert correct(disgust, TEXT_ONLY, RewardOptions(similarity="wheel", wheel="parrott")) == 0.5


@pytest.mark.parametrize("text, expected", [
    (answer(emotion="anger", rationale="short"), 1.0),
    ("Anger.", 0.0),  # a bare label: parsed, but not the constrained answer
    (answer(emotion="rage"), 0.0),
    ('{"emotion": "anger", ', 0.0),
    ('{"emotion": "anger", "rationale": "a\nb"}', 0.0),  # a raw control character: strict JSON rejects it
    ("no json here", 0.0),
    (answer(emotion="anger") + ' ar speaker"}', 0.0),  # text after the object: padding a policy would learn
    ("  " + answer(emotion="anger") + "\n", 1.0),
])
def test_format(text, expected):
    assert well_formed(text, TEXT_ONLY, PLAIN) == expected


def test_a_broken_answer_is_read_whole_not_by_its_inner_object():
    broken = '{"emotion":"anger","rationale":"ry\x10 frowns at the camera.","cues":{"lexical":""}}'
    assert absent_claims(broken, TEXT_ONLY.shown) == ["visual"]  # the inner {"lexical": ""} says nothing


@pytest.mark.parametrize("rationale, cues, claimed", [
    ("The words are an insult.", {}, []),
    ("She frowns and says it is unfair.", {}, ["visual"]),
    ("Smiling, he shouts back.", {}, ["visual", "vocal"]),
    ("A raised voice.", {}, ["vocal"]),
    ("The words are an insult.", {"visual": "clenched"}, ["visual"]),
    ("An eyebrow raised.", {}, ["visual"]),
    ("Brown paper, a tonal shift in the words.", {}, []),  # whole words only: brown, tonal
])
def test_a_rationale_naming_an_absent_modality_is_caught(rationale, cues, claimed):
    text = answer(emotion="anger", rationale=rationale, cues=cues)
    assert absent_claims(text, TEXT_ONLY.shown) == claimed
    assert grounded(text, TEXT_ONLY, PLAIN) == (0.0 if claimed else 1.0)


def test_a_shown_modality_may_be_named():
    text = answer(emotion="anger", rationale="She frowns; her voice is loud.")
    assert grounded(text, BOTH, PLAIN) == 1.0
    assert absent_claims("she frowns, plainly angry", TEXT_ONLY.shown) == ["visual"]  # not JSON: read whole
    # A broken answer earns nothing, whatever it names: else breaking answers would be the easy way to earn it.
    assert grounded("plainly angry", TEXT_ONLY, PLAIN) == 0.0
    assert grounded(answer(emotion="anger", rationale="Plainly angry.") + " x", TEXT_ONLY, PLAIN) == 0.0


def test_length_penalty_starts_at_max_chars_and_stops_at_minus_one():
    options = RewardOptions(max_chars=100)
    assert length("x" * 100, TEXT_ONLY, options) == 0.0
    assert length("x" * 150, TEXT_ONLY, options) == pytest.approx(-0.5)
    assert length("x" * 1000, TEXT_ONLY, options) == -1.0


def test_score_weighs_the_named_rewards():
    options = RewardOptions(weights={"correct": 1.0, "format": 0.5, "grounded": 0.5, "length": 1.0}, max_chars=20)
    text = answer(emotion="anger", rationale="She frowns.")
    parts = score(text, TEXT_ONLY, options)
    over = (len(text) - 20) / 20
    assert parts == pytest.approx({"correct": 1.0, "format": 1.0, "grounded": 0.0, "length": -min(1.0, over),
                                   "total": 1.0 + 0.5 + 0.0 - min(1.0, over)})


@pytest.mark.parametrize("bad, message", [
    ({"weights": {"corect": 1.0}}, "unknown rewards"),
    ({"similarity": "colour"}, "reward similarity"),
    ({"partial_credit": 2.0}, "partial_credit"),
])
def test_bad_reward_options_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        RewardOptions(**bad)


REASONED = Asked((EMOTION,), {"emotion": "anger"}, shown=("lexical",),
                 reasoning=Reasoning("before", "<reasoning>", "</reasoning>", 32))


def reasoned(thought: str, answer_text: str) -> str:
    """A think-then-answer completion as a rollout decodes it: the block's text, its end, then the answer."""
    return thought + "</reasoning>\n" + answer_text


def test_a_reasoned_completion_is_scored_on_the_answer_after_its_block():
    text = reasoned("the words are curt", answer(emotion="anger"))
    assert (correct(text, REASONED, PLAIN), well_formed(text, REASONED, PLAIN)) == (1.0, 1.0)
    assert correct(text, TEXT_ONLY, PLAIN) == 0.0  # read as an answer alone, the block breaks it
    # The block never ended: no answer follows it, whatever the text holds.
    assert correct("curt " + answer(emotion="anger"), REASONED, PLAIN) == 0.0
    assert correct(reasoned("curt", answer(emotion="joy")), REASONED, PLAIN) == 0.0


def test_grounded_reads_the_reasoning_too():
    good = reasoned("the words are curt", answer(emotion="anger", rationale="Curt words."))
    assert grounded(good, REASONED, PLAIN) == 1.0
    # A text-only sample whose reasoning speaks of a face it was never shown.
    assert grounded(reasoned("she frowns", answer(emotion="anger", rationale="Curt words.")), REASONED, PLAIN) == 0.0


def test_the_reasoning_length_penalty_counts_the_block_alone():
    options = RewardOptions(max_reasoning_chars=20, max_chars=1000)
    long_answer = answer(emotion="anger", rationale="x" * 200)
    assert reasoning_length(reasoned("x" * 20, long_answer), REASONED, options) == 0.0
    assert reasoning_length(reasoned("x" * 30, answer(emotion="anger")), REASONED, options) == pytest.approx(-0.5)
    assert reasoning_length(reasoned("x" * 90, answer(emotion="anger")), REASONED, options) == -1.0
    assert reasoning_length(long_answer, TEXT_ONLY, options) == 0.0  # no block: nothing to penalise
    assert length(reasoned("x" * 2000, long_answer), REASONED, options) == 0.0  # the answer's own length


def test_reasoning_match_grades_the_block_against_the_reference_reasoning():
    asked = replace(REASONED, reference="false=3 odd")
    exact, near, far = (reasoning_match(reasoned(t, answer(emotion="anger")), asked, PLAIN)
                        for t in ("false=3 odd", "false=2 even", "the words are curt"))
    assert exact == 1.0 and 0.3 < near < 1.0 and far < near  # a wrong count still beats unrelated words
    assert reasoning_match(reasoned("false=3 odd", "broken"), asked, PLAIN) == 1.0  # it reads the block alone
    assert reasoning_match(reasoned("false=3 odd", answer(emotion="anger")), REASONED, PLAIN) == 0.0  # no reference
    assert reasoning_match(answer(emotion="anger"), replace(TEXT_ONLY, reference="x"), PLAIN) == 0.0  # no block
