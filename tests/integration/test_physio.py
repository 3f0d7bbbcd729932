"""The WESAD and DEAP loaders on small files written in each release's exact layout: subject-wise splits,
windows and baselines, the signals read through the media stage, and `inspect`'s summary."""
import pickle

import numpy as np
import pytest
from helpers import run_cli

from mllm_mer.core.types import MediaSettings
from mllm_mer.datasets import DatasetError, load_split
from mllm_mer.media import load_media
from mllm_mer.synthetic.physio import write_deap_subject, write_wesad_subject

PROTOCOL = ((0, 10), (1, 40), (0, 10), (2, 40), (3, 40), (4, 20), (6, 10))  # transients (0) and ignored (6) between


@pytest.fixture(scope="module")
def wesad(tmp_path_factory):
    root = tmp_path_factory.mktemp("WESAD")
    for number in (2, 15):  # S2 is in train, S15 in test
        write_wesad_subject(root, number, PROTOCOL, seed=number)
    return root


@pytest.fixture(scope="module")
def deap(tmp_path_factory):
    root = tmp_path_factory.mktemp("data_preprocessed_python")
    ratings = np.array([[7.1, 8.0, 5, 5], [2.0, 2.5, 5, 5], [8.0, 3.0, 5, 5], [3.0, 7.2, 5, 5]] * 10)
    for number in (1, 30):  # s01 is in train, s30 in test
        write_deap_subject(root, number, ratings, seed=number)
    return root


def test_the_written_files_have_the_releases_keys_shapes_and_rates(wesad, deap):
    with open(wesad / "S2" / "S2.pkl", "rb") as f:
        subject = pickle.load(f, encoding="latin1")
    assert set(subject) == {"subject", "signal", "label"} and subject["subject"] == "S2"
    chest, wrist = subject["signal"]["chest"], subject["signal"]["wrist"]
    n = subject["label"].size
    assert n == 170 * 700 and chest["ACC"].shape == (n, 3) and chest["ECG"].shape == (n, 1)
    assert wrist["BVP"].shape == (170 * 64, 1) and wrist["EDA"].shape == (170 * 4, 1) and wrist["ACC"].shape[1] == 3
    with open(deap / "s01.dat", "rb") as f:
        trials = pickle.load(f, encoding="latin1")
    assert trials["data"].shape == (40, 40, 8064) and trials["labels"].shape == (40, 4)


def test_wesad_splits_by_subject_into_windows_of_each_protocol_state(wesad):
    train, test = load_split("wesad", wesad, "train", window=20), load_split("wesad", wesad, "test", window=20)
    assert {s.speaker for s in train.samples} == {"S2"} and {s.speaker for s in test.samples} == {"S15"}
    states = [s.gold["state"] for s in train.samples]
    assert states.count("baseline") == 2 and states.count("stress") == 2 and states.count("meditation") == 1
    first = train.samples[0]
    assert (first.start, first.end) == (10.0, 30.0) and first.metadata["physio_baseline"] == [10.0, 50.0]
    three = load_split("wesad", wesad, "S2", window=20, classes=3)
    assert three.labels == "wesad3" and "meditation" not in {s.gold["state"] for s in three.samples}
    with pytest.raises(DatasetError, match="WESAD splits are"):
        load_split("wesad", wesad, "S99")


def test_wesad_windows_read_through_the_media_stage_against_the_subjects_baseline(wesad):
    samples = {s.gold["state"]: s for s in load_split("wesad", wesad, "S2", window=20).samples}
    stress = load_media(samples["stress"], MediaSettings())
    assert "(ECG), " in stress.physio_cues and "above this person's baseline" in stress.physio_cues
    assert stress.physio_features["hr_bpm"] == pytest.approx(105, abs=3)
    wrist = load_media(load_split("wesad", wesad, "S2", window=20, device="wrist").samples[2], MediaSettings())
    assert "(pulse)" in wrist.physio_cues and wrist.physio_features["eda_channel"] == "wrist EDA"


def test_deap_binary_and_quadrant_targets_split_by_subject(deap):
    train = load_split("deap", deap, "train")
    assert len(train.samples) == 40 and {s.speaker for s in train.samples} == {"s01"}
    first = train.samples[0]
    assert first.gold == {"valence": "high", "arousal": "high"} and (first.start, first.end) == (3.0, 63.0)
    assert train.samples[1].gold == {"valence": "low", "arousal": "low"}
    quadrants = load_split("deap", deap, "test", target="quadrant")
    assert quadrants.labels == "deap4" and [s.gold["quadrant"] for s in quadrants.samples[:4]] == [
        "HVHA", "LVLA", "HVLA", "LVHA"]
    calm, aroused = (load_media(train.samples[i], MediaSettings()).physio_features for i in (1, 0))
    assert aroused["hr_bpm"] > calm["hr_bpm"] + 30 and aroused["resp_rate"] > calm["resp_rate"] + 8
    assert calm["eeg_channels"] == 32 and aroused["eda_tonic_us"] > 1.0  # GSR read as conductance (uS)


def test_inspect_summarises_the_signal_windows_and_subjects(wesad):
    shown = run_cli("inspect", "--dataset", "wesad", "--data-dir", wesad, "--split", "all", "--show", "1",
                    "--dataset-options", "{window: 20}")
    assert "wesad/all: 14 samples" in shown.stdout
    assert "physio: 14 signal windows (windows 20-20 s) from 2 subjects; 14 with a baseline" in shown.stdout
    assert "Physiological signals: <physio_cues>20 s of signals; heart rate" in shown.stdout


# -- through the CLI as a user types it ---------------------------------------------------------------

@pytest.fixture(scope="module")
def signal_manifest(tmp_path_factory):
    """A manifest of 4 rows over one session recording (calm 0-40 s, aroused 40-80 s), windows by start/end,
    the calm part as every row's baseline; one row names a missing file and one an empty file."""
    import json

    from mllm_mer.synthetic.physio import AROUSED, CALM, simulate, write_csv

    root = tmp_path_factory.mktemp("signals")
    calm, aroused = simulate(CALM, 40, 128, seed=1), simulate(AROUSED, 40, 128, seed=2)
    write_csv(root / "session.csv", {k: np.concatenate([calm[k], aroused[k]]) for k in ("ECG", "EDA", "RESP")}, 128)
    (root / "empty.csv").write_text("")
    rows = [{"id": "calm", "text": "I am fine.", "physio": "session.csv", "start": 0, "end": 40, "label": "neutral"},
            {"id": "aroused", "text": "I am fine.", "physio": "session.csv", "start": 40, "end": 80, "label": "anger"},
            {"id": "missing", "text": "I am fine.", "physio": "gone.csv", "label": "neutral"},
            {"id": "empty", "text": "I am fine.", "physio": "empty.csv", "label": "neutral"}]
    for row in rows:
        row["physio_baseline"] = "0:40"
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_predict_with_a_signal_file_shows_the_physio_evidence(tiny_model, signal_manifest):
    proc = run_cli("predict", "--model", tiny_model, "--transcript", "I am fine.", "--physio",
                   signal_manifest / "session.csv", "--labels", "meld", "--template", "label_only", "--mode", "score",
                   "--show-evidence", "--show-prompt", "--dtype", "float32", timeout=900)
    import json

    answer = json.loads(proc.stdout)
    assert answer["ok"] and "physio" not in answer["cues"]
    assert "Physiological signals: <physio_cues>80 s of signals; heart rate" in proc.stderr
    # --physio-view both: the traces drawn as one more image beside the words, which the model takes in
    drawn = run_cli("predict", "--model", tiny_model, "--transcript", "I am fine.", "--physio",
                    signal_manifest / "session.csv", "--physio-view", "both", "--labels", "meld", "--template",
                    "label_only", "--mode", "score", "--show-prompt", "--dtype", "float32", timeout=900)
    assert json.loads(drawn.stdout)["ok"] and "Their traces are drawn in the last image above." in drawn.stderr
    assert json.loads(drawn.stdout)["tasks"] != answer["tasks"]  # the image reached the model: other numbers
    refused = run_cli("predict", "--model", tiny_model, "--physio", signal_manifest / "nope.csv", check=False)
    assert refused.returncode != 0 and "--physio" in refused.stderr and "Traceback" not in refused.stderr


def test_evaluate_and_ablate_a_manifest_with_a_physio_column(tiny_model, signal_manifest, tmp_path):
    import json

    data = ["--dataset", "manifest", "--data-dir", signal_manifest / "manifest.jsonl", "--model", tiny_model,
            "--labels", "meld", "--template", "label_only", "--dtype", "float32"]
    run = run_cli("evaluate", *data, "--out", tmp_path / "run", check=False, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    records = {r["id"]: r for r in map(json.loads, (tmp_path / "run" / "predictions.jsonl").read_text().splitlines())}
    assert records["calm"]["prediction"]["ok"] and records["aroused"]["prediction"]["ok"]
    for bad, reason in (("missing", "gone.csv: file not found"), ("empty", "empty.csv: empty file")):
        failed = records[bad]["prediction"]
        assert failed["error_kind"] == "media" and reason in failed["error"]
    ablation = run_cli("ablate", *data, "--out", tmp_path / "ablate", check=False, timeout=900)
    assert ablation.returncode == 0, ablation.stderr[-3000:]
    for row in ("expert: text |", "expert: physio |", "expert: joint |"):  # text+physio is the joint prompt
        assert row in ablation.stdout


# -- learnability: a label that only the signals carry ---------------------------------------------------

PHYSIO_RECIPE = "finetune/configs/tiny_physio_lora.yaml"


@pytest.fixture(scope="module")
def physio_task(tmp_path_factory):
    """The task as the recipe's comment says to make it: `mllm-mer make-tiny DIR --physio-task TASK`."""
    root = tmp_path_factory.mktemp("physio-task")
    made = run_cli("make-tiny", root / "tiny", "--physio-task", root / "calm-or-aroused")
    assert "calm-or-aroused task (signals only)" in made.stdout
    return root / "calm-or-aroused"


def physio_finetune(model, task, out, *extra) -> float:
    """`mllm-mer finetune` with the shipped recipe, as a user types it; returns the dev accuracy."""
    from helpers import cli_finetune, dev_accuracy, recipe_overrides

    cli_finetune(PHYSIO_RECIPE, recipe_overrides(model, task, out, *extra))
    return dev_accuracy(out)


def prompts_of(model, task, modalities):
    """The dev split's prompts: (messages as JSON, the frames' bytes) and the class of each sample."""
    import json

    from mllm_mer.config import MediaConfig, ModelConfig, PromptConfig
    from mllm_mer.pipeline.resolve import resolve_prompt
    from mllm_mer.stages.prepare import prepare

    samples = list(load_split("manifest", task / "manifest.jsonl", "dev", labels=str(task / "labels.yaml")).samples)
    setup = resolve_prompt(ModelConfig(model=str(model)), PromptConfig(
        labels=str(task / "labels.yaml"), template="label_only", modalities=modalities),
        MediaConfig(max_frames=2, max_pixels=12544))
    ready = prepare(samples, setup)
    seen = [(json.dumps(p.prompt.messages), b"".join(np.asarray(f).tobytes() for f in p.media.frames)) for p in ready]
    return seen, [s.gold["emotion"] for s in samples]


def test_a_lora_learns_a_label_that_only_the_signals_carry(tiny_model, physio_task, tmp_path):
    """Calm or aroused ECG, EDA and breathing from NeuroKit2's simulators, the same transcript and frames for
    every sample: with the physio modality a LoRA learns it, without it the same recipe stays at chance, and
    `ablate` shows what the signals add."""
    without, classes = prompts_of(tiny_model, physio_task, ["text", "video"])
    assert set(classes) == {"neutral", "anger"} and len(set(without)) == 1  # identical across classes
    assert without[0][1] and "Physiological signals: not available." in without[0][0]
    read, _ = prompts_of(tiny_model, physio_task, ["text", "video", "physio"])
    for (messages, frames), label in zip(read, classes, strict=True):
        assert frames == without[0][1]  # the frames are the same; the signals are all that differ
        heart = messages.split("heart rate ")[1].split(";")[0]
        assert ("above this person's baseline" in heart) == (label == "anger"), heart

    assert physio_finetune(tiny_model, physio_task, tmp_path / "with") >= 0.9
    assert physio_finetune(tiny_model, physio_task, tmp_path / "without", "modalities=[text, video]") <= 0.6

    ablation = run_cli("ablate", "--model", tiny_model, "--adapter", tmp_path / "with" / "adapter", "--dataset",
                       "manifest", "--data-dir", physio_task / "manifest.jsonl", "--split", "test", "--dtype",
                       "float32", "--out", tmp_path / "ablate", check=False, timeout=900)
    assert ablation.returncode == 0, ablation.stderr[-3000:]
    accuracy = {line.split(" | ")[0].removeprefix("| expert: "): float(line.split(" | ")[1])
                for line in ablation.stdout.splitlines() if line.startswith("| expert: ")}
    assert accuracy["joint"] >= 0.9 and accuracy["text+video"] <= 0.6, ablation.stdout
