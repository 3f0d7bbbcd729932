"""The acoustic front end on real speech: eGeMAPS cues of espeak-ng speech (a subprocess), silero voice activity,
the dialogue command on a recording, and the steps an ablated modality may not run (faces: test_frontend_faces)."""
import json

import numpy as np
import pytest
from helpers import run_cli

from mllm_mer.core.types import MediaSettings, PromptSetup, Sample
from mllm_mer.media import load_media
from mllm_mer.media.acoustic import baseline, describe, egemaps
from mllm_mer.media.vad import speech_segments
from mllm_mer.synthetic.frontend import face_clip, speak, write_speech

SENTENCE = "I really did not expect to see you here today, it is a lovely surprise."
VOICES = {"low": (25, 160), "high": (85, 160), "slow": (50, 110), "fast": (50, 280)}


@pytest.fixture(scope="module")
def voices(tmp_path_factory):
    """Four utterances of one speaker: two pitches, two rates; each a WAV with 0.6 s of silence around it."""
    folder = tmp_path_factory.mktemp("voices")
    return {name: write_speech(folder / f"{name}.wav", [0.6, speak(SENTENCE, pitch, rate), 0.6])
            for name, (pitch, rate) in VOICES.items()}


@pytest.fixture(scope="module")
def features(voices):
    from mllm_mer.media.audio import load_audio

    return {name: egemaps(load_audio(str(path))) for name, path in voices.items()}


def test_egemaps_cues_say_higher_pitch_and_faster_against_the_speakers_median(features):
    reference = baseline(list(features.values()))
    assert "higher pitch than this speaker's median" in describe(features["high"], reference)
    assert "lower pitch than this speaker's median" in describe(features["low"], reference)
    assert "faster pace than this speaker's median" in describe(features["fast"], reference)
    assert features["high"]["f0_mean_st"] > features["low"]["f0_mean_st"] + 3
    assert features["high"]["f0_hz"] > features["low"]["f0_hz"]
    assert features["fast"]["speaking_rate"] > features["slow"]["speaking_rate"]


def test_without_a_baseline_no_voice_reads_high_and_silence_around_speech_is_no_pause(features):
    for numbers in features.values():
        words = describe(numbers)
        assert "high pitch" not in words and "low pitch" not in words
        assert numbers["pause_ratio"] < 0.2  # 1.2 s of lead-in/trailing silence trimmed by the VAD
    assert "fast pace" in describe(features["fast"])


def test_the_prediction_record_keeps_the_egemaps_numbers(voices, features, meld_spec):
    from mllm_mer.core.types import Prediction
    from mllm_mer.evaluation.records import record_for
    from mllm_mer.stages.prepare import prepare_one

    reference = baseline(list(features.values()))
    sample = Sample(id="h", audio=str(voices["high"]), transcript="hello", speaker="A",
                    metadata={"vocal_baseline": reference})
    ready = prepare_one(sample, PromptSetup(scheme=meld_spec), [])
    assert "higher pitch than this speaker's median" in ready.prompt.media.vocal_cues
    record = record_for(sample, Prediction(sample_id="h"), ready.prompt, ("text", "audio"))
    assert record["inputs"]["vocal_features"]["f0_mean_st"] == pytest.approx(features["high"]["f0_mean_st"])


def test_a_dialogues_speakers_get_their_own_baselines(voices):
    from mllm_mer.conversation.baselines import with_speaker_baselines

    samples = [Sample(id=n, audio=str(p), speaker="A") for n, p in voices.items()] + [
        Sample(id="x", audio=str(voices["low"]), speaker="B")]
    found = with_speaker_baselines(samples)
    assert all("vocal_baseline" in s.metadata for s in found[:4])
    assert "vocal_baseline" not in found[4].metadata  # one utterance is no baseline


@pytest.fixture(scope="module")
def three_utterances(tmp_path_factory):
    """Three espeak-ng utterances with 0.8 s silences, and their true (start, end) times."""
    parts, truth, t = [0.3], [], 0.3
    for i, text in enumerate(["Good morning to you.", "Where have you been all day?", "I missed you so much."]):
        wave = speak(text, 50, 170)
        trimmed = wave[np.flatnonzero(np.abs(wave) > 0.01)[0]:np.flatnonzero(np.abs(wave) > 0.01)[-1] + 1]
        truth.append((t, t + trimmed.size / 16000))
        t += trimmed.size / 16000 + 0.8
        parts += [trimmed, 0.8] if i < 2 else [trimmed, 0.5]
    return write_speech(tmp_path_factory.mktemp("vad") / "three.wav", parts), truth


def test_vad_finds_three_utterances_within_a_quarter_second(three_utterances):
    from mllm_mer.media.audio import load_audio

    path, truth = three_utterances
    found = speech_segments(load_audio(str(path)))
    assert len(found) == 3
    for (start, end), (a, b) in zip(found, truth, strict=True):
        assert abs(start - a) <= 0.25 and abs(end - b) <= 0.25
    from mllm_mer.media.vad import cached_segments

    wave = load_audio(str(path))
    assert cached_segments(str(path), wave, 1.0) == found == cached_segments(str(path), wave[:0], 1.0)  # cached


def test_dialogue_audio_writes_three_utterances(three_utterances, tiny_model, tmp_path):
    from mllm_mer.synthetic.tiny_whisper import make_tiny_whisper

    whisper = make_tiny_whisper(tmp_path / "whisper")
    out = tmp_path / "asr"
    done = run_cli("dialogue", "--audio", three_utterances[0], "--asr-model", whisper, "--model", tiny_model,
                   "--template", "label_only", "--out", out, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(x) for x in (out / "timeline.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(r["speaker"] == "unknown speaker" for r in rows)
    for row, (a, b) in zip(rows, three_utterances[1], strict=True):
        assert abs(row["start"] - a) <= 0.25 and abs(row["end"] - b) <= 0.25


@pytest.fixture(scope="module")
def moving(tmp_path_factory):
    return face_clip(tmp_path_factory.mktemp("faces") / "moving.mp4", seconds=3.0, fps=10)


def test_ablated_modalities_run_neither_the_acoustic_nor_the_face_steps(voices, moving, monkeypatch):
    import mllm_mer.media.faces as faces
    import mllm_mer.media.speech_cues as speech_cues

    def refuse(*args, **kwargs):
        raise AssertionError("this step must not run")

    monkeypatch.setattr(speech_cues, "egemaps", refuse)
    monkeypatch.setattr(faces, "detect", refuse)
    settings = MediaSettings(max_frames=2, visual="faces", frame_selection="peak")
    sound_only = load_media(Sample(id="v", video=str(moving), transcript="hi"), settings, ("text", "audio"))
    assert sound_only.frames == ()
    no_sound = load_media(Sample(id="a", audio=str(voices["high"]), transcript="hi"), settings, ("text", "video"))
    assert no_sound.vocal_cues is None
