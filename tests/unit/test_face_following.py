"""Faces followed from frame to frame instead of searched whole in every frame: on the real portrait and
the synthetic face clips, the boxes match those of a whole-frame search of every frame (the front end's
first detector, kept here as the reference), no face is lost, and whole-frame searches are few."""
from functools import lru_cache

import numpy as np
import pytest
from PIL import Image

from mllm_mer.media import faces
from mllm_mer.media.faces import Box, detect, find_main, iou, track
from mllm_mer.media.video import read_frames
from mllm_mer.synthetic.frontend import face_clip, portrait, write_frames


@lru_cache(maxsize=1)
def _cascade():
    import cv2

    return cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")


def searched_whole(image: Image.Image) -> list[Box]:
    """The first detector: every frame searched whole at 640 px wide (PIL's resize), largest first."""
    scale = min(1.0, 640 / image.width)
    gray = np.asarray(image.convert("L").resize((max(1, round(image.width * scale)),
                                                 max(1, round(image.height * scale)))))
    side = max(20, int(0.03 * gray.shape[1]))
    found = _cascade().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(side, side))
    return sorted((tuple(int(round(v / scale)) for v in box) for box in found), key=lambda b: -b[2] * b[3])


def _two_places(path, cut: bool):
    """The portrait at one place for a second, then (a cut) far across the frame; or absent for a second."""
    face = portrait(256)

    def frame_at(i):
        canvas = Image.new("RGB", (1280, 720), (90, 110, 130))
        if i >= 10 or cut:
            canvas.paste(face, (900, 230) if i >= 10 else (80, 200))
        return canvas

    return write_frames(path, frame_at, 20, fps=10)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("following")
    return {"moving": face_clip(folder / "moving.mp4", seconds=3.0, fps=10),
            "wide": face_clip(folder / "wide.mp4", seconds=3.0, fps=25, side=288),
            "changed": face_clip(folder / "changed.mp4", seconds=4.0, fps=25, moving=False, changed=(1.9, 2.1)),
            "late": _two_places(folder / "late.mp4", cut=False),
            "cut": _two_places(folder / "cut.mp4", cut=True)}


def test_the_portrait_is_found_where_a_whole_frame_search_finds_it():
    from skimage import data

    image = Image.fromarray(data.astronaut())
    assert iou(detect(image)[0], searched_whole(image)[0]) >= 0.9


@pytest.mark.parametrize(("name", "frames"), [("moving", 8), ("moving", 16), ("wide", 8),
                                              ("changed", 32), ("late", 8), ("cut", 8), ("cut", 16)])
def test_followed_faces_keep_every_face_a_search_of_every_frame_finds(clips, name, frames):
    images = read_frames(str(clips[name]), frames, max_pixels=1280 * 720).images
    reference = track([searched_whole(image) for image in images])
    followed = find_main(images)
    assert any(reference)
    for before, now in zip(reference, followed, strict=True):
        if before is not None:
            assert now is not None and iou(before, now) >= 0.5, (before, now)


def test_a_face_is_searched_for_whole_only_where_it_cannot_be_followed(clips, monkeypatch):
    calls = []
    monkeypatch.setattr(faces, "detect", lambda image, detector="haar": calls.append(1) or detect(image, detector))
    moving = read_frames(str(clips["moving"]), 8, max_pixels=1280 * 720).images
    assert all(find_main(moving)) and len(calls) == 1  # the first frame only: the others follow its face
    calls.clear()
    cut = read_frames(str(clips["cut"]), 8, max_pixels=1280 * 720).images
    boxes = find_main(cut)
    assert len(calls) == 2  # the first frame, and the first after the cut, where the face left its place
    assert boxes[0][0] < 300 and boxes[-1][0] > 900
    calls.clear()
    find_main(moving, stride=4)
    assert len(calls) == 2  # also every 4th frame, for faces that enter later


def _stills(path, frames: int, pixels: int):
    """The front end's candidates: decoded frames kept in YUV (their luma is what the search reads)."""
    from mllm_mer.media.decode import file_key
    from mllm_mer.media.stills import still
    from mllm_mer.media.video import decode_uncached

    return decode_uncached(file_key(str(path)), frames, None, None, None, pixels, 0.0, still).images


@pytest.mark.parametrize(("name", "frames", "pixels"), [("moving", 16, 1280 * 720), ("changed", 32, 640 * 360),
                                                        ("cut", 8, 1280 * 720), ("late", 8, 640 * 360)])
def test_faces_followed_on_the_decoded_luma_are_those_a_search_of_every_rgb_frame_finds(clips, name, frames, pixels):
    reference = track([searched_whole(im) for im in read_frames(str(clips[name]), frames, max_pixels=pixels).images])
    followed = find_main([s.grey for s in _stills(clips[name], frames, pixels)])
    assert any(reference)
    for before, now in zip(reference, followed, strict=True):
        if before is not None:
            assert now is not None and iou(before, now) >= 0.5, (before, now)


def test_a_crop_converted_alone_is_the_same_square_of_the_whole_frame_in_rgb(clips):
    frame = _stills(clips["moving"], 4, 1280 * 720)[1]
    whole = np.asarray(frame.rgb())
    assert np.array_equal(np.asarray(frame.rgb((300, 200, 402, 402))), whole[200:602, 300:702])
    odd = np.asarray(frame.rgb((301, 201, 401, 401)))  # widened to even edges, as 4:2:0 chroma needs
    assert np.array_equal(odd, whole[200:602, 300:702])
    shrunk = np.asarray(_stills(clips["moving"], 4, 640 * 360)[1].rgb()).astype(int)
    assert shrunk.shape == (360, 640, 3)
    assert np.abs(shrunk - np.asarray(Image.fromarray(whole).resize((640, 360), Image.BOX)).astype(int)).mean() < 3
