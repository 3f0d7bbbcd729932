"""Loaders: the real MELD CSVs, and small fixtures in each release's layout written here."""
import csv
import json
from collections import Counter

import pytest
from helpers import MELD_DIR, requires_meld

from mllm_mer.datasets import DatasetError, from_hf_dataset, load_hf, load_split

EXPECTED_SIZES = {"train": 9989, "dev": 1109, "test": 2610}


def _csv_rows(split):
    name = {"train": "train_sent_emo.csv", "dev": "dev_sent_emo.csv", "test": "test_sent_emo.csv"}[split]
    with open(MELD_DIR / name, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("split", ["train", "dev", "test"])
@requires_meld
def test_meld_real_csvs_sizes_and_label_counts(split):
    data = load_split("meld", MELD_DIR, split)
    rows = _csv_rows(split)
    assert len(data.samples) == EXPECTED_SIZES[split] == len(rows)
    assert Counter(s.gold["emotion"] for s in data.samples) == Counter(r["Emotion"] for r in rows)
    assert Counter(s.gold["sentiment"] for s in data.samples) == Counter(r["Sentiment"] for r in rows)


@requires_meld
def test_meld_context_is_the_dialogue_so_far_in_utterance_order():
    data = {s.id: s for s in load_split("meld", MELD_DIR, "dev", context=-1).samples}
    rows = [r for r in _csv_rows("dev") if r["Dialogue_ID"] == "1"]
    rows.sort(key=lambda r: int(r["Utterance_ID"]))
    last = data[f"dia1_utt{rows[-1]['Utterance_ID']}"]
    assert [t.text for t in last.context] == [r["Utterance"] for r in rows[:-1]]
    assert [t.speaker for t in last.context] == [r["Speaker"] for r in rows[:-1]]
    windowed = {s.id: s for s in load_split("meld", MELD_DIR, "dev", context=2).samples}[last.id]
    assert windowed.context == last.context[-2:]
    assert all(t.emotion is None for t in last.context)  # gold labels of context only when asked


def test_meld_repairs_mojibake_of_the_release(tmp_path):
    rows = _csv_rows("dev")[:40]
    originals = {}
    with open(tmp_path / "dev_sent_emo.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            key = f"dia{row['Dialogue_ID']}_utt{row['Utterance_ID']}"
            originals[key] = row["Utterance"]
            # what the release has in some rows: UTF-8 bytes read back as cp1252
            row = dict(row, Utterance=row["Utterance"].encode("utf-8").decode("cp1252", errors="replace"))
            writer.writerow(row)
    broken = sum("â€" in r["Utterance"].encode("utf-8").decode("cp1252", errors="replace") for r in rows)
    assert broken > 0  # the fixture does contain mojibake
    data = load_split("meld", tmp_path, "dev")
    for sample in data.samples:
        assert "â€" not in sample.transcript
        assert sample.transcript == originals[sample.id].strip()


def test_meld_finds_clips_in_the_release_folders(tmp_path):
    from mllm_mer.synthetic.media import write_clip

    rows = _csv_rows("dev")[:3]
    with open(tmp_path / "dev_sent_emo.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (tmp_path / "dev_splits_complete").mkdir()
    first = f"dia{rows[0]['Dialogue_ID']}_utt{rows[0]['Utterance_ID']}"
    write_clip(tmp_path / "dev_splits_complete" / f"{first}.mp4", seconds=0.5)
    data = {s.id: s for s in load_split("meld", tmp_path, "dev").samples}
    assert data[first].video.endswith(f"{first}.mp4")
    assert sum(s.video is not None for s in data.values()) == 1


@requires_meld
def test_split_round_trips_through_a_hf_dataset():
    ds = load_hf("meld", MELD_DIR, "dev")
    assert len(ds) == 1109 and "transcript" in ds.column_names
    assert from_hf_dataset(ds.select(range(20))) == list(load_split("meld", MELD_DIR, "dev").samples[:20])


def test_iemocap_release_layout(tmp_path):
    session = tmp_path / "Session1"
    (session / "dialog" / "EmoEvaluation").mkdir(parents=True)
    (session / "dialog" / "transcriptions").mkdir(parents=True)
    (session / "sentences" / "wav" / "Ses01F_impro01").mkdir(parents=True)
    (session / "dialog" / "EmoEvaluation" / "Ses01F_impro01.txt").write_text(
        "% header\n"
        "[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5, 2.5, 2.5]\n"
        "C-E2:\tNeutral;\t()\n"
        "[10.0100 - 11.3925]\tSes01F_impro01_M000\texc\t[3.5, 3.5, 3.0]\n"
        "[14.8872 - 18.0175]\tSes01F_impro01_F001\txxx\t[2.5, 3.0, 3.0]\n"
        "[19.2900 - 20.7875]\tSes01F_impro01_M001\tfru\t[2.0, 3.5, 3.5]\n")
    (session / "dialog" / "transcriptions" / "Ses01F_impro01.txt").write_text(
        "Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.\n"
        "Ses01F_impro01_M000 [010.0100-011.3925]: Do you have your forms?\n"
        "Ses01F_impro01_F001 [014.8872-018.0175]: Yeah.\n"
        "Ses01F_impro01_M001 [019.2900-020.7875]: Let me see them.\n")
    (session / "sentences" / "wav" / "Ses01F_impro01" / "Ses01F_impro01_F000.wav").write_bytes(b"RIFF")
    six = {s.id: s for s in load_split("iemocap", tmp_path, "session1").samples}
    assert {k: s.gold["emotion"] for k, s in six.items()} == {
        "Ses01F_impro01_F000": "neutral", "Ses01F_impro01_M000": "excited", "Ses01F_impro01_M001": "frustrated"}
    m001 = six["Ses01F_impro01_M001"]
    assert m001.transcript == "Let me see them." and (m001.start, m001.end) == (19.29, 20.7875)
    assert [t.text for t in m001.context] == ["Excuse me.", "Do you have your forms?", "Yeah."]
    assert six["Ses01F_impro01_F000"].audio.endswith("Ses01F_impro01_F000.wav")
    four = {s.id: s.gold["emotion"] for s in load_split("iemocap4", tmp_path, "session1").samples}
    assert four == {"Ses01F_impro01_F000": "neutral", "Ses01F_impro01_M000": "happy"}
    with pytest.raises(DatasetError, match="empty"):
        load_split("iemocap", tmp_path, "all-but-session1")
    with pytest.raises(DatasetError, match="sessionN"):
        load_split("iemocap", tmp_path, "fold1")


def test_ravdess_labels_from_file_names(tmp_path):
    actor = tmp_path / "Actor_12"
    actor.mkdir()
    for name in ("03-01-06-01-02-01-12.wav", "01-01-03-02-01-01-12.mp4", "03-02-05-01-01-01-12.wav", "README.txt"):
        (actor / name).write_bytes(b"")
    data = {s.id: s for s in load_split("ravdess", tmp_path, "train").samples}
    assert set(data) == {"03-01-06-01-02-01-12", "01-01-03-02-01-01-12"}  # song and non-media files left out
    fear = data["03-01-06-01-02-01-12"]
    assert fear.gold == {"emotion": "fearful"} and fear.transcript == "Dogs are sitting by the door."
    assert fear.audio and fear.video is None and fear.metadata["intensity"] == "normal"
    happy = data["01-01-03-02-01-01-12"]
    assert happy.gold == {"emotion": "happy"} and happy.video and happy.metadata["intensity"] == "strong"
    with pytest.raises(DatasetError, match="empty"):
        load_split("ravdess", tmp_path, "test")


def test_mer2024_label_and_transcription_csvs(tmp_path):
    (tmp_path / "video").mkdir()
    (tmp_path / "video" / "sample_00000007.mp4").write_bytes(b"")
    (tmp_path / "label-disdim.csv").write_text("name,discrete,valence\nsample_00000007,worried,-1.2\n"
                                               "sample_00000021,happy,2.0\n")
    (tmp_path / "transcription-engchi-polish.csv").write_text(
        "name,chinese,english\nsample_00000007,我很担心,I am so worried\nsample_00000021,太好了,Great\n",
        encoding="utf-8")
    data = {s.id: s for s in load_split("mer2024", tmp_path, "train").samples}
    assert data["sample_00000007"].gold == {"emotion": "worried"}
    assert data["sample_00000007"].transcript == "I am so worried" and data["sample_00000007"].video
    zh = {s.id: s for s in load_split("mer2024", tmp_path, "train", language="chinese").samples}
    assert zh["sample_00000021"].transcript == "太好了" and zh["sample_00000021"].video is None


@pytest.mark.parametrize("name,expected", [("mosi", ["negative", "positive", "positive"]),
                                           ("mosi7", ["strongly negative", "neutral", "weakly positive"])])
def test_mosi_scores_map_to_classes(tmp_path, name, expected):
    (tmp_path / "label.csv").write_text("video_id,clip_id,text,label,mode\nv1,1,awful,-2.8,test\nv1,2,ok,0.0,test\n"
                                        "v2,1,nice,1.2,test\nv3,1,x,1.0,train\n")
    data = load_split(name, tmp_path, "test")
    assert [s.gold["sentiment"] for s in data.samples] == expected
    assert [s.metadata["score"] for s in data.samples] == [-2.8, 0.0, 1.2]


def test_manifest_csv_and_jsonl_with_column_mapping(tmp_path):
    from mllm_mer.datasets.manifest import Columns

    (tmp_path / "m.csv").write_text("uid,utt,emo,who,conv\na,Hi there,joy,Ann,c1\nb,Go away,anger,Bob,c1\n")
    cols = Columns(id="uid", text="utt", label="emo", speaker="who", dialogue="conv")
    data = load_split("manifest", tmp_path / "m.csv", None, columns=cols)
    b = data.samples[1]
    assert b.gold == {"emotion": "anger"} and b.speaker == "Bob" and b.context[0].text == "Hi there"
    lines = [{"id": "x", "text": "hello", "label": "neutral", "video": "clips/x.mp4"}]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    [x] = load_split("manifest", tmp_path / "m.jsonl", None).samples
    assert x.video == str(tmp_path / "clips" / "x.mp4")
    (tmp_path / "bad.jsonl").write_text('{"id": "1"}\nnot json\n')
    with pytest.raises(DatasetError, match="bad.jsonl:2"):
        load_split("manifest", tmp_path / "bad.jsonl", None)


def test_manifest_composite_ids_and_dialogue_keys_and_list_literal_speakers(tmp_path):
    """Ids unique only per dialogue, scene ids that repeat across episodes, speakers as ['Name']."""
    from mllm_mer.datasets.manifest import Columns

    (tmp_path / "m.csv").write_text(
        "episode,scene,utt,text,label,speaker\n"
        "1,1,1,Hi,joy,['Ross']\n1,1,2,Hey,neutral,\"['Rachel', 'Monica']\"\n"
        "2,1,1,Bye,sadness,['Ross']\n2,1,2,Why,surprise,['Joey']\n")
    cols = Columns(id="episode,scene,utt", dialogue="episode,scene")
    samples = load_split("manifest", tmp_path / "m.csv", None, columns=cols).samples
    assert [s.id for s in samples] == ["1/1/1", "1/1/2", "2/1/1", "2/1/2"]
    assert [s.speaker for s in samples] == ["Ross", "Rachel, Monica", "Ross", "Joey"]
    # scene 1 of episode 2 is another dialogue: its context does not reach into episode 1
    assert [t.text for t in samples[3].context] == ["Bye"] and samples[3].context[0].speaker == "Ross"
    with pytest.raises(DatasetError, match="--id-col dialogue,utterance"):
        load_split("manifest", tmp_path / "m.csv", None, columns=Columns(id="utt"))


@requires_meld
def test_clear_errors_for_missing_data_and_unknown_splits(tmp_path):
    with pytest.raises(DatasetError, match="MELD dev CSV not found"):
        load_split("meld", tmp_path, "dev")
    with pytest.raises(DatasetError, match="splits"):
        load_split("meld", MELD_DIR, "validation")
    with pytest.raises(DatasetError, match="unknown dataset"):
        load_split("nope", tmp_path, "x")
    (tmp_path / "empty.csv").write_text("id,text,label\n")
    with pytest.raises(DatasetError, match="empty"):
        load_split("manifest", tmp_path / "empty.csv", None)
