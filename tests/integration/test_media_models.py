"""Media into a model: a bad clip in a batch, offline speech recognition of a clip, the CLI on a video with ASR."""
import os

import pytest

from mllm_mer.core.types import Sample
from mllm_mer.media import MediaSettings, load_media
from mllm_mer.synthetic.media import write_clip


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("clips") / "clip.mp4", seconds=4, fps=10, gop=5)


@pytest.fixture(scope="module")
def tiny_whisper(tmp_path_factory):
    from mllm_mer.synthetic.tiny_whisper import make_tiny_whisper

    return make_tiny_whisper(tmp_path_factory.mktemp("whisper") / "w")


def test_in_a_batch_a_bad_clip_fails_alone(hf_backend, meld_spec, clip, tmp_path):
    from mllm_mer.core.types import PromptSetup
    from mllm_mer.pipeline import predict

    (tmp_path / "bad.mp4").write_bytes(os.urandom(2048))
    samples = [Sample(id="bad", video=str(tmp_path / "bad.mp4"), transcript="hi"),
               Sample(id="good", video=str(clip), transcript="hi")]
    setup = PromptSetup(meld_spec, template="label_only", media=MediaSettings(max_frames=4))
    bad, good = predict(hf_backend, samples, setup)
    assert not bad.ok and "bad.mp4" in bad.error
    assert good.ok and good.label("emotion") in meld_spec.task("emotion").labels


def test_asr_fills_a_missing_transcript_offline(clip, tiny_whisper, meld_spec):
    from mllm_mer.prompting import build_prompt

    sample = Sample(id="c", video=str(clip))
    media = load_media(sample, MediaSettings(max_frames=2, asr_model=str(tiny_whisper)))
    assert media.transcript  # the random model says something
    text = build_prompt(sample, meld_spec, media=media).messages[1]["content"][-1]["text"]
    assert "no transcript available" not in text and "<transcript>" in text
    given = load_media(Sample(id="c", video=str(clip), transcript="given"),
                       MediaSettings(max_frames=2, asr_model=str(tiny_whisper)))
    assert given.transcript is None  # a given transcript is never replaced


def test_cli_predict_on_a_video_with_asr(clip, tmp_path):
    import json

    from helpers import run_cli

    run_cli("make-tiny", tmp_path / "m", "--whisper")
    proc = run_cli("predict", "--model", tmp_path / "m", "--video", clip, "--asr-model", tmp_path / "m" / "whisper",
                   "--max-frames", "4", "--max-new-tokens", "2048")
    pred = json.loads(proc.stdout)
    assert pred["ok"] and pred["tasks"]["emotion"]["label"] in {"neutral", "joy", "sadness", "anger", "surprise",
                                                                 "fear", "disgust"}
