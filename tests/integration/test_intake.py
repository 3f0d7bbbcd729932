"""Corpora as released, read through `datasets`: the published shapes written here, checked through the CLI
(`inspect` without a model, `evaluate` with the tiny one)."""
import json

import pytest
from helpers import run_cli as cli
from PIL import Image

from mllm_mer.config import EvaluateConfig, build
from mllm_mer.evaluation.records import read_predictions
from mllm_mer.evaluation.runner import run_evaluation

FACE_LABELS = """name: faces
tasks:
  - task: emotion
    labels: [happy, neutral, sad, angry]
    aliases: {happiness: happy, sadness: sad, anger: angry}
"""


def test_face_photos_without_text_every_row_answered_or_failed_by_name(tiny_model, tmp_path):
    """`id,image,emotion`: no text column, labels mapped by the YAML's aliases (case folded); a WebP saved as
    .jpg is read by its content, a file of garbage fails alone with its name, a missing one too."""
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (48, 48), (200, 150, 120)).save(photos / "a.png")
    Image.new("RGB", (40, 56), (90, 60, 50)).save(photos / "b.jpg", format="WEBP")  # misnamed
    (photos / "c.jpg").write_bytes(b"not an image at all")
    (tmp_path / "faces.yaml").write_text(FACE_LABELS)
    (tmp_path / "legend.csv").write_text("id,image,emotion\n1,photos/a.png,Happiness\n2,photos/b.jpg,neutral\n"
                                         "3,photos/c.jpg,sadness\n4,photos/gone.png,ANGER\n")
    shown = cli("inspect", "--dataset", "manifest", "--data-dir", tmp_path / "legend.csv", "--text-col", "",
                "--label-col", "emotion", "--labels", tmp_path / "faces.yaml", "--model", tiny_model, "--show", "1")
    assert "legend.csv: 4 samples; 0 with text" in shown.stdout
    assert "emotion: happy 1, neutral 1, sad 1, angry 1" in shown.stdout and "outside" not in shown.stdout
    assert f"image: 3 found, 1 missing (first: {tmp_path / 'photos' / 'gone.png'})" in shown.stdout
    assert "=== sample 1 (as prompted) ===" in shown.stdout and "[image]" in shown.stdout
    cli("evaluate", "--dataset", "manifest", "--data-dir", tmp_path / "legend.csv", "--text-col", "", "--label-col",
        "emotion", "--labels", tmp_path / "faces.yaml", "--model", tiny_model, "--mode", "score", "--template",
        "label_only", "--out", tmp_path / "run")
    records = read_predictions(tmp_path / "run" / "predictions.jsonl")
    assert sorted(records) == ["1", "2", "3", "4"]
    assert (tmp_path / "run" / "report.md").read_text().splitlines()[0] == "# manifest"  # no "/ None" split
    assert records["1"]["prediction"]["ok"] and records["2"]["prediction"]["ok"]
    for key, name in (("3", "c.jpg"), ("4", "gone.png")):
        failed = records[key]["prediction"]
        assert not failed["ok"] and failed["error_kind"] == "media" and name in failed["error"], failed


def test_a_headerless_tsv_with_label_ids_and_a_pipe_csv_of_many_columns(tiny_model, tmp_path):
    (tmp_path / "goemo.yaml").write_text("name: goemo\ntasks:\n  - task: emotion\n    multi_label: true\n"
                                         "    labels: [admiration, amusement, anger, annoyance]\n")
    (tmp_path / "train.tsv").write_text("What a great goal\t0,1\tee1\nStop it now\t2\tee2\nFine, whatever\t3,2\tee3\n")
    shown = cli("inspect", "--dataset", "manifest", "--data-dir", tmp_path / "train.tsv", "--no-header", "--columns",
                "text,labels,id", "--delimiter", "\\t", "--label-col", "labels", "--label-ids", "--labels",
                tmp_path / "goemo.yaml", "--model", tiny_model, "--show", "0")
    assert "train.tsv: 3 samples; 3 with text" in shown.stdout
    assert "emotion: anger 2, admiration 1, amusement 1, annoyance 1" in shown.stdout
    header = "|".join(["MYKEY", "SIT", "Field1"] + [f"Q{i}" for i in range(40)])
    cells = lambda *row: "|".join([*row] + ["x"] * 40)  # noqa: E731
    (tmp_path / "isear.csv").write_text("\n".join([header, cells("1", "When I passed the exam", "joy"),
                                                    cells("2", "When my dog died", "sadness")]) + "\n")
    isear = ["--dataset", "manifest", "--data-dir", tmp_path / "isear.csv", "--delimiter", "|", "--id-col", "MYKEY",
             "--text-col", "SIT", "--label-col", "Field1", "--labels", "meld", "--task", "emotion", "--model",
             tiny_model]
    shown = cli("inspect", *isear, "--show", "1")
    assert "isear.csv: 2 samples; 2 with text" in shown.stdout and "emotion: joy 1, sadness 1" in shown.stdout
    assert "<transcript>When I passed the exam</transcript>" in shown.stdout


def test_dialogue_records_with_turns_are_flattened_with_context_and_typos_reported(tiny_model, tmp_path):
    dialogues = [{"dialogue_id": "d7", "turns": [
        {"speaker": "A", "utterance": "We won the cup!", "emotion": "happines"},
        {"speaker": "B", "utterance": "No way, really?", "emotion": "surprise"},
        {"speaker": "A", "utterance": "Really.", "emotion": "neutral"}]},
        {"dialogue_id": "d8", "turns": [{"speaker": "C", "utterance": "Leave me alone.", "emotion": "anger"}]}]
    (tmp_path / "erc.json").write_text(json.dumps(dialogues))
    common = ["--dataset", "manifest", "--data-dir", tmp_path / "erc.json", "--turns-field", "turns",
              "--dialogue-col", "dialogue_id", "--labels", "iemocap4", "--model", tiny_model, "--show", "1"]
    shown = cli("inspect", *common).stdout
    assert "erc.json: 4 samples" in shown and "dialogues: 2, turns per dialogue 1-3 (median 2)" in shown
    assert "emotion: 2 gold labels outside 'iemocap4': happines 1, surprise 1" in shown
    assert "=== sample d7/0 (as prompted) ===" in shown
    mapped = cli("inspect", *common[:-2], "--show", "2", "--label-map", "happines=happy,surprise=neutral").stdout
    assert "outside" not in mapped and "emotion: neutral 2, happy 1, angry 1" in mapped
    second = mapped[mapped.index("=== sample d7/1"):]
    assert "A: We won the cup!" in second and "<transcript>No way, really?</transcript>" in second


def test_a_bom_csv_of_chinese_dialogue_with_composite_keys(tiny_model, tmp_path):
    labels = ["neutral", "happy", "sad", "angry", "surprise", "fear", "disgust", "worried", "anxious", "relaxed",
              "depressed", "grateful", "astonished"]
    (tmp_path / "cped.yaml").write_text("name: cped13\ntasks:\n  - task: emotion\n    labels: [" + ", ".join(labels)
                                        + "]\n")
    rows = ["TV_ID,Dialogue_ID,Utterance_ID,Speaker,Utterance,Emotion", "1,1,1,王,你好吗？,happy",
            "1,1,2,李,我很好。,relaxed", "2,1,1,王,别说了！,angry"]
    (tmp_path / "cped.csv").write_bytes("\ufeff".encode() + "\n".join(rows).encode() + b"\n")
    shown = cli("inspect", "--dataset", "manifest", "--data-dir", tmp_path / "cped.csv", "--id-col",
                "TV_ID,Dialogue_ID,Utterance_ID", "--dialogue-col", "TV_ID,Dialogue_ID", "--speaker-col", "Speaker",
                "--text-col", "Utterance", "--label-col", "Emotion", "--labels", tmp_path / "cped.yaml", "--model",
                tiny_model, "--show", "2").stdout
    assert "cped.csv: 3 samples; 3 with text" in shown and "dialogues: 2, turns per dialogue 1-2" in shown
    assert "=== sample 1/1/2 (as prompted) ===" in shown and "王: 你好吗？" in shown
    assert "emotion: happy 1, relaxed 1, angry 1" in shown


@pytest.fixture(scope="module")
def same_rows(tmp_path_factory):
    """One manifest as CSV, Parquet and a save_to_disk folder (written by `datasets` itself)."""
    import datasets

    folder = tmp_path_factory.mktemp("formats")
    rows = [{"id": f"{i:03d}", "text": t, "label": lab} for i, (t, lab) in
            enumerate([("You did WHAT?", "surprise"), ("Fine.", "neutral"), ("Get out!", "anger")])]
    table = datasets.Dataset.from_list(rows)
    table.to_csv(folder / "m.csv", index=False)
    table.to_parquet(folder / "m.parquet")
    table.save_to_disk(str(folder / "m_disk"))
    return folder


def test_parquet_and_a_saved_folder_give_the_predictions_of_the_csv(tiny_model, hf_backend, same_rows, tmp_path):
    runs = {}
    for name in ("m.csv", "m.parquet", "m_disk"):
        cfg = build(EvaluateConfig, dataset="manifest", data_dir=str(same_rows / name), labels="meld", task="emotion",
                    mode="score", template="label_only", out=str(tmp_path / name), model=str(tiny_model),
                    dtype="float32")
        run_evaluation(cfg, backend=hf_backend, progress=False)
        runs[name] = read_predictions(tmp_path / name / "predictions.jsonl")
    assert sorted(runs["m.csv"]) == ["000", "001", "002"]  # ids as written: 000 stays 000
    assert runs["m.parquet"] == runs["m.csv"] == runs["m_disk"]


def test_rows_out_of_order_take_their_context_by_the_order_column_and_media_from_the_root(tiny_model, tmp_path):
    from mllm_mer.synthetic.media import write_wav

    sounds = tmp_path / "sounds"
    sounds.mkdir()
    write_wav(sounds / "b.wav", seconds=0.5)
    (tmp_path / "rows.csv").write_text("utt,dialogue,turn,speaker,text,label,wav\n"
                                       "u2,d1,2,B,Second words,joy,b.wav\nu1,d1,1,A,First words,neutral,a.wav\n")
    shown = cli("inspect", "--dataset", "manifest", "--data-dir", tmp_path / "rows.csv", "--id-col", "utt",
                "--dialogue-col", "dialogue", "--order-col", "turn", "--audio-col", "wav", "--media-root", sounds,
                "--model", tiny_model, "--show", "2").stdout
    assert shown.index("=== sample u1") < shown.index("=== sample u2")  # dialogue order, not file order
    second = shown[shown.index("=== sample u2"):]
    assert "A: First words" in second and "1 samples with earlier turns as context" in shown
    assert f"audio: 1 found, 1 missing (first: {sounds / 'a.wav'})" in shown
