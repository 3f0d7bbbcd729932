"""The visual front end on real material, in process: faces of a real portrait (skimage's astronaut), tracking,
crops, the fallback to the whole frame, peak-frame selection, and the fingerprints of the front end's settings."""
from dataclasses import replace

import pytest

from mllm_mer.core.types import MediaSettings, PromptSetup, Sample
from mllm_mer.media import load_media
from mllm_mer.media.decode import Window
from mllm_mer.media.faces import crop_side, detect, fill_gaps, find_main, iou, track
from mllm_mer.media.frontend import read_visual
from mllm_mer.synthetic.frontend import face_clip, portrait, write_frames


@pytest.fixture(scope="module")
def moving(tmp_path_factory):
    return face_clip(tmp_path_factory.mktemp("faces") / "moving.mp4", seconds=3.0, fps=10)


def test_the_detector_finds_the_astronauts_face():
    from PIL import Image
    from skimage import data

    boxes = detect(Image.fromarray(data.astronaut()))
    assert boxes and iou(boxes[0], (168, 58, 104, 112)) >= 0.5  # the face, boxed by hand


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


def test_front_end_settings_at_their_defaults_leave_fingerprints_and_keys_as_they_were():
    from mllm_mer.evaluation.fingerprint import identity, media_fingerprint
    from mllm_mer.media.frontend import front_end

    defaults = media_fingerprint(MediaSettings())
    assert "media_cache_gb" not in defaults  # where frames are cached changes no answer
    assert identity(media_fingerprint(MediaSettings()), defaults) == {}
    assert identity(media_fingerprint(MediaSettings(visual="faces")), defaults) == {"visual": "faces"}
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
