"""Dialogues without a model: subtitles into utterances, transcript errors, emotion-shift and per-speaker metrics."""
import re

import pytest
from helpers import SRT, VTT

from mllm_mer.conversation.shifts import shift_metrics
from mllm_mer.conversation.transcripts import TranscriptError, read_transcript
from mllm_mer.core.types import Sample


@pytest.mark.parametrize("suffix, text", [(".srt", SRT), (".vtt", VTT)])
def test_subtitles_become_utterances_with_speakers_and_times(tmp_path, suffix, text):
    path = tmp_path / f"talk{suffix}"
    path.write_text(text)
    utterances = read_transcript(path)
    assert [u.speaker for u in utterances] == ["Ann", "Bob", "Ann"]
    assert [(u.start, u.end) for u in utterances] == [(0.0, 1.2), (1.2, 2.4), (2.4, 3.8)]
    assert utterances[1].text == "Did what? I was only joking."


@pytest.mark.parametrize("name, content, message", [
    ("unordered.srt", SRT.replace("00:00:02,400 --> 00:00:03,800", "00:00:00,500 --> 00:00:03,800"),
     "cue 3 starts at 0.50 s, before cue 2"),
    ("latin1.srt", None, "latin1.srt:3: not UTF-8"),
    ("empty.vtt", "WEBVTT\n", "empty.vtt: no utterances"),
    ("backwards.jsonl", '{"speaker": "A", "start": 2, "end": 1, "text": "x"}\n', "cue 1 ends (1.00 s) before"),
    ("broken.jsonl", '{"speaker": "A"}\n', "broken.jsonl:1: expected"),
])
def test_bad_transcripts_are_clear_errors_naming_file_and_cue(tmp_path, name, content, message):
    path = tmp_path / name
    if content is None:
        path.write_bytes(SRT.replace("I can't", "Caf\xe9, I can't").encode("latin-1"))
    else:
        path.write_text(content)
    with pytest.raises(TranscriptError, match=re.escape(message)):
        read_transcript(path)


def test_shift_metrics_on_a_hand_computed_example():
    speakers = ["A", "B", "A", "B", "A", "A"]
    gold = ["joy", "neutral", "anger", "neutral", "anger", "sadness"]  # A: joy->anger (shift), anger, ->sadness
    predicted = ["joy", "joy", "joy", "anger", "anger", "anger"]  # A: none, ->anger, none; B: ->anger
    # A's gold shifts at turns 2 and 5; predicted shifts: A at 4, B at 3. TP 0, FP 2, FN 2
    m = shift_metrics(speakers, gold, predicted)
    assert (m["gold_shifts"], m["predicted_shifts"]) == (2, 2)
    assert m["shift_precision"] == 0 and m["shift_recall"] == 0
    m = shift_metrics(speakers, gold, gold)
    assert m["shift_f1"] == 1.0


def test_dialogue_metrics_pool_shifts_over_dialogues_and_score_each_speaker():
    from mllm_mer.core.types import Prediction, TaskPrediction
    from mllm_mer.evaluation.runner import dialogue_metrics

    def turn(d, t, speaker, gold):
        return Sample(id=f"{d}-{t}", speaker=speaker, gold={"emotion": gold}, metadata={"dialogue": d})

    samples = [turn(1, 0, "A", "joy"), turn(1, 1, "A", "anger"), turn(1, 2, "B", "joy"),  # A shifts
               turn(2, 0, "A", "fear"), turn(2, 1, "A", "fear"), turn(2, 2, "A", "joy")]  # A shifts at turn 2
    said = {"1-0": "joy", "1-1": "anger", "1-2": "sadness", "2-0": "fear", "2-1": "joy", "2-2": "joy"}
    records = {i: {"prediction": Prediction(i, tasks={"emotion": TaskPrediction(label)}).to_dict()}
               for i, label in said.items()}
    found = dialogue_metrics(samples, records, "emotion")
    # gold shifts: 1-1 and 2-2; predicted shifts: 1-1 and 2-1 (2-2 repeats 2-1's joy): one found of two each way
    assert (found["gold_shifts"], found["predicted_shifts"]) == (2, 2)
    assert found["shift_precision"] == found["shift_recall"] == found["shift_f1"] == 0.5
    assert found["speaker_accuracy"]["A"] == {"accuracy": 4 / 5, "n": 5}
    assert found["speaker_accuracy"]["B"] == {"accuracy": 0.0, "n": 1}
