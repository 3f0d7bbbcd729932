"""Synthetic tasks for honest learnability checks.

`make_task`: a task that needs both frames and words.
`make_window_task`: evidence in a short window that uniform sampling misses.
`make_tone_task`: a label that lives only in the sound's timbre, which neither words nor cue text carry.
`make_physio_task`: a label that lives only in physiological signals (calm or aroused); words and frames are the same.

Each clip is red or blue; each transcript says the weather is sunny or rainy. Each of
the four combinations has its own emotion, so the colour alone or the wording alone
can reach at most 50% accuracy (chance is 25%); 100% needs both modalities.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

from mllm_mer.synthetic.media import write_clip, write_wav

COLOURS = {"red": (220, 40, 40), "blue": (40, 60, 220)}
SENTENCES = {"sunny": ["It is sunny today.", "What a sunny morning.", "The sun is out again."],
             "rainy": ["It is rainy today.", "What a rainy morning.", "The rain is back again."]}
COMBINATIONS = {("red", "sunny"): "joy", ("red", "rainy"): "anger", ("blue", "sunny"): "surprise",
                ("blue", "rainy"): "sadness"}
LABELS_YAML = """name: colour-x-weather
tasks:
  - task: emotion
    labels: [joy, anger, surprise, sadness]
    descriptions: {joy: pleased, anger: annoyed, surprise: astonished, sadness: sorrowful}
"""


def balanced(rng: random.Random, classes: list, count: int) -> list:
    """`count` class values, each equally often (as far as `count` allows), in a seeded random order."""
    values = [classes[i % len(classes)] for i in range(count)]
    rng.shuffle(values)
    return values


def write_manifest(out: Path, rows: list[dict]) -> Path:
    manifest = out / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def combined_label(colour: str, weather: str) -> str:
    return COMBINATIONS[(colour, weather)]


def make_task(out_dir: str | Path, n_train: int = 128, n_dev: int = 32, n_test: int = 64,
                  seed: int = 0) -> Path:
    """Writes clips/, manifest.jsonl (with a split column) and labels.yaml; returns the manifest path."""
    out = Path(out_dir)
    (out / "clips").mkdir(parents=True, exist_ok=True)
    (out / "labels.yaml").write_text(LABELS_YAML)
    for name, rgb in COLOURS.items():  # one clip per colour: the frames are all that differ
        write_clip(out / "clips" / f"{name}.mp4", seconds=1.0, fps=4, size=(56, 56), audio=False,
                   colour=lambda i, rgb=rgb: rgb)
    rng = random.Random(seed)
    rows = []
    for split, count in (("train", n_train), ("dev", n_dev), ("test", n_test)):
        # Balanced: every combination equally often, so one modality alone is worth exactly 50%.
        combos = balanced(rng, list(COMBINATIONS), count)
        for i, (colour, weather) in enumerate(combos):
            rows.append({"id": f"{split}{i:04d}", "split": split, "text": rng.choice(SENTENCES[weather]),
                         "video": f"clips/{colour}.mp4", "label": combined_label(colour, weather),
                         "colour": colour, "weather": weather})
    return write_manifest(out, rows)


# -- a task whose evidence hides in a short window -------------------------------------------------
# A 4 s clip is grey except for 0.4 s (1.6-2.0 s) of red or blue: uniform sampling of 2 or 4 frames
# (at 1.0/3.0 s, or 0.5/1.5/2.5/3.5 s) never sees the colour, so one pass is at chance; an agent that
# looks at 1.5-2.0 s sees it. The transcript is the same for every clip.
WINDOW = (1.6, 2.0)
WINDOW_LABELS = {"red": "joy", "blue": "sadness"}
WINDOW_LOOK = {"tool": "look", "args": {"start": 1.5, "end": 2, "n": 2}}
WINDOW_LABELS_YAML = """name: hidden-window
tasks:
  - task: emotion
    labels: [joy, sadness]
    descriptions: {joy: pleased, sadness: sorrowful}
"""


def make_window_task(out_dir: str | Path, n_train: int = 96, n_dev: int = 24, n_test: int = 32, seed: int = 0
                     ) -> Path:
    """Writes clips/, manifest.jsonl (split column; train rows carry a scripted `trace`: look at the
    window, then answer) and labels.yaml; returns the manifest path."""
    out = Path(out_dir)
    (out / "clips").mkdir(parents=True, exist_ok=True)
    (out / "labels.yaml").write_text(WINDOW_LABELS_YAML)
    fps, grey = 10, (128, 128, 128)
    for name, rgb in COLOURS.items():
        hidden = range(int(WINDOW[0] * fps), int(WINDOW[1] * fps))
        # One keyframe: no sampled time can snap into the window.
        write_clip(out / "clips" / f"{name}.mp4", seconds=4.0, fps=fps, size=(56, 56), audio=False, gop=40,
                   colour=lambda i, rgb=rgb, hidden=hidden: rgb if i in hidden else grey)
    rng = random.Random(seed)
    rows = []
    for split, count in (("train", n_train), ("dev", n_dev), ("test", n_test)):
        colours = balanced(rng, list(COLOURS), count)
        for i, colour in enumerate(colours):
            rows.append({"id": f"{split}{i:04d}", "split": split, "text": "Watch closely.",
                         "video": f"clips/{colour}.mp4", "label": WINDOW_LABELS[colour], "colour": colour,
                         "trace": [WINDOW_LOOK] if split == "train" else []})
    return write_manifest(out, rows)


# -- a task only a model that hears can learn ------------------------------------------------------
# A sine or a square wave at one pitch and one loudness (equal RMS): the timbre differs, and nothing
# else. openSMILE finds no speech in a pure tone, so the cue text is the same for both ("no clear
# speech found"), and so is the transcript: a model reading words and cues is at chance.
TONE_HZ = 440.0
TONE_LABELS = {"sine": "neutral", "square": "anger"}
TONE_TEXT = "Listen to this."
TONE_LABELS_YAML = """name: tone-timbre
tasks:
  - task: emotion
    labels: [neutral, anger]
    descriptions: {neutral: calm, anger: annoyed}
"""


def make_tone_task(out_dir: str | Path, n_train: int = 64, n_dev: int = 16, n_test: int = 16, seed: int = 0
                   ) -> Path:
    """Writes sounds/ (one 1 s WAV per shape), manifest.jsonl (split column) and labels.yaml; returns the
    manifest path."""
    out = Path(out_dir)
    (out / "sounds").mkdir(parents=True, exist_ok=True)
    (out / "labels.yaml").write_text(TONE_LABELS_YAML)
    for shape in TONE_LABELS:
        write_wav(out / "sounds" / f"{shape}.wav", seconds=1.0, tone_hz=TONE_HZ, shape=shape)
    rng = random.Random(seed)
    rows = []
    for split, count in (("train", n_train), ("dev", n_dev), ("test", n_test)):
        shapes = balanced(rng, list(TONE_LABELS), count)
        rows += [{"id": f"{split}{i:04d}", "split": split, "text": TONE_TEXT, "audio": f"sounds/{shape}.wav",
                  "label": TONE_LABELS[shape], "shape": shape} for i, shape in enumerate(shapes)]
    return write_manifest(out, rows)


# -- a task whose label lives only in the body's signals -------------------------------------------
# Every sample has the same transcript and the same grey clip. Its signal file (ECG, EDA, respiration from
# NeuroKit2's simulators) is one person's recording: 30 s at rest (the baseline), then the 30 s window the
# label is about, calm (that person's resting values again) or aroused (faster heart and breathing, more
# skin-conductance responses). Without the signals the prompt is the same for every sample, so a model that
# does not read them is at chance.
PHYSIO_TEXT = "I am fine."
PHYSIO_SECONDS, PHYSIO_RATE = 30, 100  # per part; long enough for NeuroKit2 to count breaths at 12/min
PHYSIO_LABELS_YAML = """name: calm-or-aroused
tasks:
  - task: emotion
    labels: [neutral, anger]
    descriptions: {neutral: calm, anger: agitated}
"""


def physio_states(rng: random.Random, label: str):
    """(resting state, the window's state) of one simulated person."""
    from mllm_mer.synthetic.physio import State

    rest = State(rng.uniform(58, 72), rng.uniform(12, 15), rng.randint(0, 2))
    if label == "neutral":
        return rest, State(rest.heart_rate * rng.uniform(0.98, 1.02), rest.breathing * rng.uniform(0.97, 1.03),
                           rest.responses)
    return rest, State(rng.uniform(100, 120), rng.uniform(21, 26), rng.randint(6, 9))


def write_physio_recording(path: Path, rng: random.Random, label: str) -> dict:
    """One person's rest-then-window recording as a CSV; returns its manifest fields."""
    import numpy as np

    from mllm_mer.synthetic.physio import simulate, write_csv

    parts = [simulate(state, PHYSIO_SECONDS, PHYSIO_RATE, seed=rng.randrange(2**31), ecg_method="simple")
             for state in physio_states(rng, label)]
    write_csv(path, {k: np.concatenate([p[k] for p in parts]) for k in ("ECG", "EDA", "RESP")}, PHYSIO_RATE)
    return {"start": PHYSIO_SECONDS, "end": 2 * PHYSIO_SECONDS, "physio_baseline": f"0:{PHYSIO_SECONDS}"}


def make_physio_task(out_dir: str | Path, n_train: int = 64, n_dev: int = 16, n_test: int = 16, seed: int = 0
                     ) -> Path:
    """Writes signals/ (one recording per sample), clips/grey.mp4, manifest.jsonl (split column) and
    labels.yaml; returns the manifest path."""
    out = Path(out_dir)
    (out / "signals").mkdir(parents=True, exist_ok=True)
    (out / "clips").mkdir(parents=True, exist_ok=True)
    (out / "labels.yaml").write_text(PHYSIO_LABELS_YAML)
    # The session's video, as long as each recording: the window's frames are grey for every sample.
    write_clip(out / "clips" / "grey.mp4", seconds=2 * PHYSIO_SECONDS, fps=2, size=(56, 56), audio=False,
               colour=lambda i: (128, 128, 128))
    rng = random.Random(seed)
    rows = []
    for split, count in (("train", n_train), ("dev", n_dev), ("test", n_test)):
        for i, label in enumerate(balanced(rng, ["neutral", "anger"], count)):
            name = f"{split}{i:04d}"
            window = write_physio_recording(out / "signals" / f"{name}.csv", rng, label)
            rows.append({"id": name, "split": split, "text": PHYSIO_TEXT, "video": "clips/grey.mp4",
                         "physio": f"signals/{name}.csv", "label": label, **window})
    return write_manifest(out, rows)
