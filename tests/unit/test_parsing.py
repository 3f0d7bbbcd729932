from mllm_mer.core.parsing import parse_answer


def test_valid_json_answer(meld_spec):
    raw = '{"emotion":"anger","sentiment":"negative","rationale":"shouting","cues":{"vocal":"loud","visual":""}}'
    pred = parse_answer(raw, meld_spec.label_sets, "s1")
    assert pred.ok and pred.label("emotion") == "anger" and pred.label("sentiment") == "negative"
    assert pred.rationale == "shouting" and pred.cues == {"vocal": "loud"} and pred.raw == raw


def test_synonyms_in_a_fenced_answer_with_preamble(meld_spec):
    raw = 'Sure! Here it is:\n```json\n{"emotion": "Happy", "sentiment": "pos"}\n```'
    pred = parse_answer(raw, meld_spec.label_sets, "s1")
    assert pred.ok and pred.label("emotion") == "joy" and pred.label("sentiment") == "positive"


def test_label_outside_the_set_is_a_failure_not_a_guess(meld_spec):
    pred = parse_answer('{"emotion":"banana","sentiment":"neutral"}', meld_spec.label_sets, "s1")
    assert not pred.ok and "banana" in pred.error and pred.label("emotion") is None


def test_missing_task_is_a_failure(meld_spec):
    pred = parse_answer('{"emotion":"joy"}', meld_spec.label_sets, "s1")
    assert not pred.ok and "sentiment" in pred.error


def test_garbage_keeps_the_raw_text(meld_spec):
    for raw in ["", "I think they are sad and angry", "{not json"]:
        pred = parse_answer(raw, meld_spec.label_sets, "s1")
        assert not pred.ok and pred.raw == raw and pred.tasks == {}


def test_bare_label_is_accepted_only_for_a_single_task(meld_spec):
    from mllm_mer.core.labels import load_label_scheme

    assert parse_answer("Angry.", load_label_scheme("iemocap4").label_sets, "s").label("emotion") == "angry"
    assert not parse_answer("anger", meld_spec.label_sets, "s").ok


def test_prediction_round_trips_through_a_dict(meld_spec):
    from mllm_mer.core.types import Prediction

    pred = parse_answer('{"emotion":"joy","sentiment":"positive"}', meld_spec.label_sets, "s1")
    assert Prediction.from_dict(pred.to_dict()) == pred


def test_a_raw_control_character_is_invalid_json_as_for_any_client(meld_spec):
    """A standard client's json.loads rejects it; so do we, and say why."""
    pred = parse_answer('{"emotion":"joy","sentiment":"positive","rationale":"a\x11b"}', meld_spec.label_sets, "s1")
    assert not pred.ok and pred.error == "invalid JSON: a raw control character inside a string"


def test_a_cue_for_a_modality_the_prompt_did_not_show_is_dropped_with_a_note(meld_spec):
    raw = '{"emotion":"joy","sentiment":"positive","cues":{"visual":"smile","vocal":"a warm voice"}}'
    pred = parse_answer(raw, meld_spec.label_sets, "s1", cue_modalities=("visual", "lexical"))
    assert pred.ok and pred.cues == {"visual": "smile"}
    assert pred.notes == ["dropped the answer's vocal cue: the prompt did not show that modality"]


def test_a_label_is_known_while_written_once_the_schema_lets_only_one_label_follow(meld_spec):
    from mllm_mer.core.parsing import label_so_far

    emotion, sentiment = meld_spec.label_sets
    seen = {text: label_so_far(text, emotion) for text in (
        '{"emo', '{"emotion":"', '{"emotion":"s', '{"emotion":"sa', '{"emotion":"d', '{"emotion":"x',
        '{"emotion":"surprise"', '{"emotion":"surprise","sentiment":"n')}
    assert seen == {'{"emo': None, '{"emotion":"': None, '{"emotion":"s': None,  # sadness or surprise
                    '{"emotion":"sa': "sadness", '{"emotion":"d': "disgust", '{"emotion":"x': None,
                    '{"emotion":"surprise"': "surprise", '{"emotion":"surprise","sentiment":"n': "surprise"}
    assert label_so_far('{"emotion":"joy","sentiment":"n', sentiment) is None  # neutral or negative
    assert label_so_far('{"emotion":"joy","sentiment":"p', sentiment) == "positive"
