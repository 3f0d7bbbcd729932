"""The Batch tab's pure parts: the columns an upload has, the mapping guessed for them, messages without
server paths."""
import json
import zipfile

import pytest

from mllm_mer.app.batch_tab import EXPECTED, column_options, guess_mapping, manifest_columns, public_message


def test_a_zipped_csv_with_other_column_names_is_offered_a_mapping(tmp_path):
    archive = tmp_path / "batch.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("data/m.csv", "clip_id,utterance,emotion_gold,wav_path\na1,Hello.,joy,a1.wav\n")
    name, columns = manifest_columns(archive)
    assert (name, columns) == ("m.csv", ["clip_id", "utterance", "emotion_gold", "wav_path"])
    mapping = guess_mapping(columns)
    assert mapping == {"id_col": "clip_id", "text_col": "utterance", "label_col": "emotion_gold", "video_col": "",
                       "audio_col": "wav_path", "image_col": ""}


def test_the_default_names_win_and_a_jsonl_is_read_from_its_first_record(tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"id": "s0", "text": "Hi", "label": "joy", "video": "c.mp4", "speaker_id": 3})
                        + "\n")
    _, columns = manifest_columns(manifest)
    mapping = guess_mapping(columns)
    assert (mapping["id_col"], mapping["text_col"], mapping["video_col"]) == ("id", "text", "video")


def test_unreadable_uploads_say_why_in_one_line(tmp_path):
    bad = tmp_path / "two.zip"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("a.csv", "id\n1\n")
        z.writestr("b.jsonl", "{}\n")
    with pytest.raises(ValueError, match=r"two.zip: the zip must hold exactly one .csv or .jsonl manifest \(found 2"):
        manifest_columns(bad)
    broken = tmp_path / "m.jsonl"
    broken.write_text("not json\n")
    with pytest.raises(ValueError, match="m.jsonl: line 1 is not a JSON object"):
        manifest_columns(broken)


def test_the_id_column_must_be_chosen_and_an_unchosen_role_reads_no_column():
    import gradio as gr

    assert column_options("clip_id", "(none)", "emotion_gold", "", "wav_path", "(none)") == {
        "id_col": "clip_id", "text_col": "", "label_col": "emotion_gold", "video_col": "", "audio_col": "wav_path",
        "image_col": ""}
    with pytest.raises(gr.Error, match="choose the id column"):
        column_options("(none)", "text", "label", "", "", "")


def test_messages_shown_to_users_carry_no_server_path():
    upload_folder = "/tmp/gradio/0a1b"
    text = ("/srv/app/runs/batch-1/input/data/m.csv: no id column 'id' (columns: clip_id, utterance); "
            "see /usr/lib/python3/x.py and ~/secret/notes.txt")
    shown = public_message(text, upload_folder)
    assert shown.startswith("m.csv: no id column 'id' (columns: clip_id, utterance)"), shown
    assert public_message("/tmp/gradio/0a1b/my data.csv: empty", upload_folder) == "my data.csv: empty"
    assert "/srv" not in shown and "/usr" not in shown and "~/" not in shown
    assert "x.py" in shown and "notes.txt" in shown
    plain = "cut at --max-new-tokens 64; a/b stays"
    assert public_message(plain, upload_folder) == plain
    assert "`id`" in EXPECTED and "`label`" in EXPECTED
