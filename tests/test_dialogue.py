"""Whole conversations: transcript files, predicted context in lockstep, shift metrics, the dialogue verb."""
import json
import re
import subprocess
import sys

import pytest
from PIL import Image

from mllm_mer.dialogue import (
    TranscriptError,
    classify_dialogues,
    read_transcript,
    shift_metrics,
    utterance_samples,
)
from mllm_mer.media.synth import write_clip
from mllm_mer.types import PromptSetup, Sample

SRT = """1
00:00:00,000 --> 00:00:01,200
Ann: I can't believe you did that.

2
00:00:01,200 --> 00:00:02,400
Bob: Did what? I was only joking.

3
00:00:02,400 --> 00:00:03,800
Ann: It was not funny at all.
"""

VTT = """WEBVTT

00:00.000 --> 00:01.200
<v Ann>I can't believe you did that.

00:01.200 --> 00:02.400
<v Bob>Did what? I was only joking.

00:02.400 --> 00:03.800
<v Ann>It was not funny at all.
"""


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


def test_context_holds_exactly_the_predictions_for_earlier_turns_in_lockstep(hf_backend, meld_spec):
    dialogues = [[Sample(id=f"d{d}t{t}", transcript=f"dialogue {d} turn {t}", speaker="AB"[t % 2])
                  for t in range(n)] for d, n in enumerate((3, 1, 2))]
    steps = []
    results = classify_dialogues(hf_backend, dialogues, PromptSetup(meld_spec, template="label_only"), "predicted",
                                 window=-1, on_turn=lambda batch, preds: steps.append((batch, preds)))
    assert [len(batch) for batch, _ in steps] == [3, 2, 1]  # turn i of every dialogue in one call
    for batch, _ in steps:
        for sample in batch:
            d, t = (int(x) for x in sample.id[1:].split("t"))
            expected = [results[d][j].label("emotion") for j in range(t)]
            assert [turn.emotion for turn in sample.context] == expected
            assert [turn.text for turn in sample.context] == [f"dialogue {d} turn {j}" for j in range(t)]
    # a resumed run asks only for turns not yet done; done turns still label the context
    done = {dialogues[0][0].id: results[0][0]}
    asked = []
    classify_dialogues(hf_backend, dialogues[:1], PromptSetup(meld_spec, template="label_only"), "predicted",
                       done=done, on_turn=lambda batch, preds: asked.extend(s.id for s in batch))
    assert asked == ["d0t1", "d0t2"]


@pytest.mark.vllm
def test_lockstep_dialogues_on_the_vllm_engine(vllm_backend, meld_spec, tmp_path):
    path = tmp_path / "talk.srt"
    path.write_text(SRT)
    samples = utterance_samples(read_transcript(path))
    [predictions] = classify_dialogues(vllm_backend, [samples], PromptSetup(meld_spec, template="label_only"),
                                       "predicted")
    assert all(p.ok for p in predictions) and len(predictions) == 3


@pytest.fixture(scope="module")
def conversation(tmp_path_factory):
    root = tmp_path_factory.mktemp("talk")
    clip = write_clip(root / "talk.mp4", seconds=4.0, fps=8, tone_hz=220)
    (root / "talk.srt").write_text(SRT)
    (root / "talk.vtt").write_text(VTT)
    return root, clip


@pytest.mark.parametrize("suffix", [".srt", ".vtt"])
def test_dialogue_command_writes_the_timeline(tiny_model, conversation, tmp_path, suffix):
    root, clip = conversation
    out = tmp_path / "timeline"
    proc = subprocess.run([sys.executable, "-m", "mllm_mer.cli", "dialogue", "--model", str(tiny_model), "--dtype",
                           "float32", "--video", str(clip), "--transcript", str(root / f"talk{suffix}"), "--out",
                           str(out), "--template", "label_only", "--max-frames", "2"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(x) for x in (out / "timeline.jsonl").read_text().splitlines()]
    assert [r["speaker"] for r in rows] == ["Ann", "Bob", "Ann"]
    assert [(r["start"], r["end"]) for r in rows] == [(0.0, 1.2), (1.2, 2.4), (2.4, 3.8)]
    assert all(r["ok"] and r["labels"]["emotion"] for r in rows)
    with Image.open(out / "timeline.png") as image:
        assert image.size[0] > 300 and image.size[1] > 100
    report = (out / "timeline.md").read_text()
    assert "| Ann | 2 |" in report and "| Bob | 1 |" in report and "context labels: predicted" in report
