"""The field's front end on real material: eGeMAPS cues of espeak-ng speech, silero voice activity,
faces of a real portrait (skimage's astronaut), peak-frame selection, and what each may not do."""
import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from mllm_mer.core.types import MediaSettings, PromptSetup, Sample
from mllm_mer.media import load_media
from mllm_mer.media.acoustic import baseline, describe, egemaps
from mllm_mer.media.decode import Window
from mllm_mer.media.faces import crop_side, detect, fill_gaps, find_main, iou, track
from mllm_mer.media.frontend import read_visual
from mllm_mer.media.vad import speech_segments
from mllm_mer.synthetic.frontend import face_clip, portrait, speak, write_frames, write_speech

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
    done = subprocess.run([sys.executable, "-m", "mllm_mer.cli", "dialogue", "--audio", str(three_utterances[0]),
                           "--asr-model", str(whisper), "--model", str(tiny_model), "--template", "label_only",
                           "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(x) for x in (out / "timeline.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(r["speaker"] == "unknown speaker" for r in rows)
    for row, (a, b) in zip(rows, three_utterances[1], strict=True):
        assert abs(row["start"] - a) <= 0.25 and abs(row["end"] - b) <= 0.25


def test_the_detector_finds_the_astronauts_face():
    from PIL import Image
    from skimage import data

    boxes = detect(Image.fromarray(data.astronaut()))
    assert boxes and iou(boxes[0], (168, 58, 104, 112)) >= 0.5  # the face, boxed by hand


@pytest.fixture(scope="module")
def moving(tmp_path_factory):
    return face_clip(tmp_path_factory.mktemp("faces") / "moving.mp4", seconds=3.0, fps=10)


def test_the_tracked_face_follows_the_portrait_across_the_frame(moving):
    from mllm_mer.media.video import read_frames

    clip = read_frames(str(moving), 8, max_pixels=1280 * 720)
    boxes = [b for b in track([detect(im) for im in clip.images]) if b]
    assert len(boxes) >= 6
    centres = [b[0] + b[2] / 2 for b in boxes]
    assert centres == sorted(centres) and centres[-1] - centres[0] > 600
    # Peak candidates: every 4th searched whole, the others only near their neighbour's face.
    candidates = read_frames(str(moving), 16, max_pixels=1280 * 720).images
    near = find_main(candidates, stride=4)
    assert sum(b is not None for b in near) >= 14
    assert [b[0] for b in fill_gaps(near)] == sorted(b[0] for b in fill_gaps(near))


def test_visual_faces_prompts_carry_crops_of_the_requested_size(moving, meld_spec):
    from mllm_mer.stages.prepare import prepare_one

    settings = MediaSettings(max_frames=6, visual="faces", max_pixels=336 * 336)
    ready = prepare_one(Sample(id="m", video=str(moving)), PromptSetup(scheme=meld_spec, media=settings,
                                                                       modalities=("video",)), [])
    frames = ready.prompt.media.frames
    assert len(frames) == 6 and all(im.size == (crop_side(336 * 336),) * 2 == (336, 336) for im in frames)
    both = load_media(Sample(id="m", video=str(moving)), replace(settings, visual="both"), ("video",))
    assert len({im.size for im in both.frames}) == 1 and both.frames[0].width > both.frames[0].height


def test_a_frame_without_a_face_falls_back_to_the_whole_frame_with_a_note(tmp_path):
    from PIL import Image

    face = portrait(256)

    def frame_at(i):
        canvas = Image.new("RGB", (1280, 720), (90, 110, 130))
        if i >= 10:  # the first second shows no one
            canvas.paste(face, (500, 230))
        return canvas

    path = write_frames(tmp_path / "late.mp4", frame_at, 20, fps=10)
    media = load_media(Sample(id="l", video=str(path)), MediaSettings(max_frames=4, visual="faces",
                                                                      keyframe_snap=0.0), ("video",))
    assert any("no face found at 0.20" in note and "whole frame" in note for note in media.notes)
    assert {im.size for im in media.frames} == {(448, 448)}


def test_peak_selection_finds_the_brief_change_that_uniform_sampling_misses(tmp_path):
    path = face_clip(tmp_path / "peak.mp4", seconds=4.0, fps=25, moving=False, changed=(1.9, 2.1))
    window = Window(8, keyframe_snap=0.0)
    uniform = load_media(Sample(id="u", video=str(path)), MediaSettings(keyframe_snap=0.0), ("video",))
    assert not any(1.9 <= t < 2.1 for t in uniform.frame_times)
    settings = MediaSettings(frame_selection="peak", keyframe_snap=0.0, media_cache_gb=1.0)
    peak, _ = read_visual(str(path), window, settings)
    inside = [t for t in peak.times if 1.9 <= t < 2.1]
    assert len(inside) == 2 and peak.times == tuple(sorted(peak.times))
    assert all(abs(t * 25 - round(t * 25)) < 1e-6 for t in peak.times)  # true frame times
    again, _ = read_visual(str(path), window, settings)  # from the disk cache, under its settings' key
    assert again.times == peak.times


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


def test_front_end_settings_at_their_defaults_leave_fingerprints_and_keys_as_they_were():
    from mllm_mer.evaluation.fingerprint import media_fingerprint
    from mllm_mer.media.frontend import front_end

    assert set(media_fingerprint(MediaSettings())) == {"max_frames", "fps", "max_pixels", "keyframe_snap",
                                                       "vocal_cues", "asr_model", "allowed_roots"}
    assert media_fingerprint(MediaSettings(visual="faces"))["visual"] == "faces"
    assert front_end(MediaSettings(frame_selection="peak", face_margin=0.4)) == {"frame_selection": "peak",
                                                                                  "face_margin": 0.4}


def test_the_agents_look_may_ask_for_faces_where_the_run_shows_them(moving, meld_spec):
    from mllm_mer.core.types import MediaInputs, Prompt
    from mllm_mer.strategies.agent.tools import TOOLS, Episode, Toolbox

    sample = Sample(id="m", video=str(moving))
    media = MediaInputs(frames=("f",), frame_times=(0.5,))
    episode = Episode(sample, media, Prompt("m", [], {}, (), False), [], frames_left=4, span=(0.0, 3.0))
    plain = Toolbox(PromptSetup(scheme=meld_spec))
    assert "faces" not in TOOLS["look"].parameters(episode, plain)["properties"]
    box = Toolbox(PromptSetup(scheme=meld_spec, media=MediaSettings(visual="faces", max_pixels=224 * 224)))
    assert "faces" in TOOLS["look"].parameters(episode, box)["properties"]
    seen = TOOLS["look"].run(episode, box, {"start": 1.0, "end": 2.0, "n": 2, "faces": True})
    assert "face crops" in seen.text and [im.size for im in seen.images] == [(224, 224)] * 2


def test_a_broken_clip_under_the_front_end_is_a_media_error_naming_the_file(tmp_path):
    from mllm_mer.media import MediaError

    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x01" * 500)
    with pytest.raises(MediaError, match="broken.mp4"):
        load_media(Sample(id="b", video=str(broken)), MediaSettings(visual="faces", frame_selection="peak"))
