"""Defects a user meets, in the pure logic behind them: labels against their own probabilities, cut answers,
ragged rows, aliases, the Ctrl-C line, inputs in the wrong role, a window in a recording's last frame."""
from __future__ import annotations

import pytest

from mllm_mer.core.labels import aliases_applied, load_label_scheme
from mllm_mer.core.parsing import parse_answer
from mllm_mer.core.types import Prediction, Prompt, TaskPrediction
from mllm_mer.datasets import DatasetError
from mllm_mer.datasets.tables import read_table
from mllm_mer.stages.scoring import add_probabilities

MELD = load_label_scheme("meld")
EMOTION = MELD.task("emotion")


# -- the label and its probabilities ----------------------------------------------------------------------------

class FavouringScorerStandIn:
    """Stand-in for a backend's label scoring (unit test only): the label at index `favourite` is the most
    probable of every task."""

    def __init__(self, favourite: int):
        self.favourite = favourite

    def score(self, requests, adapter=None):
        return [[0.0 if i == self.favourite else -3.0 for i in range(len(texts))] for _, texts in requests]


def _prompt(sample_id="s"):
    return Prompt(sample_id=sample_id, messages=[], schema={}, label_sets=MELD.label_sets, with_rationale=True)


def _written(emotion="neutral", sentiment="neutral", **extra) -> Prediction:
    return Prediction(sample_id="s", tasks={"emotion": TaskPrediction(emotion), "sentiment": TaskPrediction(sentiment)},
                      rationale="because", **extra)


def test_a_greedy_label_becomes_the_most_probable_one_and_the_record_says_what_was_written():
    [prediction] = predictions = [_written("neutral", "neutral")]
    add_probabilities(FavouringScorerStandIn(favourite=2), [_prompt()], predictions)
    for tp in prediction.tasks.values():
        assert tp.label == max(tp.probabilities, key=tp.probabilities.get)
    assert prediction.label("emotion") == "sadness" and prediction.label("sentiment") == "negative"
    assert any(n.startswith("emotion: the generated answer wrote 'neutral'") and "the label is 'sadness'" in n
               for n in prediction.notes), prediction.notes


def test_a_label_that_already_is_the_most_probable_gets_no_note():
    [prediction] = predictions = [_written("sadness", "negative")]
    add_probabilities(FavouringScorerStandIn(favourite=2), [_prompt()], predictions)
    assert prediction.notes == [] and prediction.label("emotion") == "sadness"


def test_a_vote_of_sampled_answers_keeps_its_label_and_records_the_most_probable():
    [prediction] = predictions = [_written("joy", "positive", extras={"consistency": {"n": 3, "agreement": {}}})]
    add_probabilities(FavouringScorerStandIn(favourite=2), [_prompt()], predictions)
    assert prediction.label("emotion") == "joy"
    assert prediction.extra("consistency")["most_probable"] == {"emotion": "sadness", "sentiment": "negative"}
    assert any("'joy' is the vote of sampled answers" in n for n in prediction.notes), prediction.notes


# -- an answer cut by the token limit -----------------------------------------------------------------------------

def test_a_cut_answer_keeps_the_labels_it_completed_with_a_note():
    pred = parse_answer('{"emotion":"anger","rationale":"bec', (EMOTION,), "s", max_new_tokens=64)
    assert pred.ok and pred.label("emotion") == "anger" and pred.rationale is None
    assert any("cut at --max-new-tokens 64" in n for n in pred.notes)


def test_a_cut_answer_without_every_label_is_a_cut_failure_naming_the_limit():
    pred = parse_answer('{"emotion":"anger","sentiment":"neg', MELD.label_sets, "s", max_new_tokens=64)
    assert not pred.ok and pred.error_kind == "cut"
    assert pred.error == "cut at --max-new-tokens 64; raise it (no complete sentiment)"
    assert pred.label("emotion") == "anger"
    assert parse_answer('{"emo', (EMOTION,), "s").error.startswith("cut at --max-new-tokens; raise it")


def test_text_that_is_no_answer_at_all_is_still_a_parse_failure():
    pred = parse_answer("I think the speaker is upset", (EMOTION,), "s", max_new_tokens=64)
    assert not pred.ok and pred.error_kind == "parse"


# -- a corpus as released ----------------------------------------------------------------------------------------

def _write(path, ragged_rows: int, rows: int = 30):
    lines = ["id|text|label"] + [f"u{i}|{'a | b' if i < ragged_rows else 'fine'}|joy" for i in range(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_ragged_row_is_left_out_and_named_when_the_caller_fails_it_alone(tmp_path):
    from mllm_mer.datasets.tables import TableFormat

    path = _write(tmp_path / "c.txt", ragged_rows=1)
    ragged: list = []
    table = read_table(path, TableFormat(delimiter="|"), ragged=ragged)
    assert len(table) == 29 and table[0]["id"] == "u1"
    assert [(r.index, r.line) for r in ragged] == [(0, 2)]
    assert ragged[0].message == f"{path}:2: 4 fields where the header names 3"
    with pytest.raises(DatasetError, match=":2: 4 fields where the header names 3$"):
        read_table(path, TableFormat(delimiter="|"))  # a caller that cannot fail one row


def test_rows_that_mostly_disagree_with_the_header_are_a_wrong_delimiter(tmp_path):
    from mllm_mer.datasets.tables import TableFormat

    path = _write(tmp_path / "c.txt", ragged_rows=20)
    with pytest.raises(DatasetError, match=r"\(20 of 30 rows; is --delimiter right\?\)"):
        read_table(path, TableFormat(delimiter="|"), ragged=[])


# -- aliases ------------------------------------------------------------------------------------------------------

def test_every_alias_applied_is_counted_by_name_and_labels_themselves_are_not():
    words = ["happy", "Happy", "joy", "Joy", "sad", "furious"]
    assert aliases_applied(EMOTION, words) == {"happy as joy": 2, "sad as sadness": 1}


@pytest.mark.parametrize("word", ["frustrated", "excited", "calm"])
def test_meld_has_no_alias_that_means_another_class_elsewhere(word):
    assert EMOTION.normalise(word) is None  # IEMOCAP's frustrated and excited, RAVDESS's calm: classes of their own


# -- Ctrl-C, inputs, model paths, the last frame -------------------------------------------------------------------

def test_the_interrupted_line_counts_the_rows_saved(tmp_path):
    from types import SimpleNamespace

    from mllm_mer.cli import interrupted_line

    (tmp_path / "predictions.jsonl").write_text('{"id": "a"}\n{"id": "b"}\n{"id": "c"')  # a torn last line
    cfg = SimpleNamespace(run=SimpleNamespace(out=str(tmp_path)))
    assert interrupted_line(["evaluate"], cfg) == (f"mllm-mer evaluate: interrupted; 2 rows saved in {tmp_path}; "
                                                   "rerun the same command to resume")
    assert interrupted_line(["predict"], None) == "mllm-mer predict: interrupted"


def test_the_interrupted_line_of_finetune_names_the_last_complete_checkpoint_and_what_a_rerun_does(tmp_path):
    from types import SimpleNamespace

    from mllm_mer.cli import interrupted_line

    def line(resume=None):
        return interrupted_line(["finetune"], SimpleNamespace(optim=SimpleNamespace(output_dir=str(tmp_path),
                                                                                    resume_from_checkpoint=resume)))

    assert line() == f"mllm-mer finetune: interrupted; no checkpoint saved yet in {tmp_path}; rerunning the same " \
                     "command starts over"
    for step in (2, 10):
        (tmp_path / "checkpoints" / f"checkpoint-{step}").mkdir(parents=True)
        (tmp_path / "checkpoints" / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    last = tmp_path / "checkpoints" / "checkpoint-10"  # by number: checkpoint-2 sorts after it as text
    assert line("true") == f"mllm-mer finetune: interrupted; last checkpoint {last} (step 10); rerun the same " \
                           "command to resume from it"
    (tmp_path / "checkpoints" / "checkpoint-12").mkdir()  # cut mid-save: no trainer_state.json, not resumable
    assert line("true") == line() == (f"mllm-mer finetune: interrupted; last checkpoint {last} (step 10); add "
                                      f"--resume-from-checkpoint {last} to resume from it (the same command alone "
                                      "starts over)")
    assert interrupted_line(["dialogue"], SimpleNamespace()) == (
        "mllm-mer dialogue: interrupted; nothing saved: the timeline is written once every utterance is answered; "
        "rerunning the same command starts over")


def test_a_path_under_a_local_folder_is_no_hub_id(tmp_path, monkeypatch):
    from mllm_mer.core.families import resolve_model

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    with pytest.raises(FileNotFoundError, match="runs/tiny-modle: no such model directory"):
        resolve_model("runs/tiny-modle")
    assert resolve_model("Qwen/Qwen2.5-VL-7B-Instruct") == "Qwen/Qwen2.5-VL-7B-Instruct"


def test_a_window_in_the_last_frames_last_half_lies_outside_the_video():
    from types import SimpleNamespace

    from mllm_mer.media.decode import window_targets
    from mllm_mer.media.errors import WindowOutside

    info = SimpleNamespace(duration=3.303, rate=10.0, keyframes=(0.0,))
    assert window_targets("c.mp4", info, 2, None, 3.2, 5.0)  # the frame at 3.2 s is still there to take
    with pytest.raises(WindowOutside, match="no frames in the window 3.3-5.0 s"):
        window_targets("c.mp4", info, 2, None, 3.3, 5.0)
