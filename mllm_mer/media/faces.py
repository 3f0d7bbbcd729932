"""Faces in sampled frames: detection (OpenCV's bundled Haar cascade, offline), the main face followed
across frames, square crops at the pixel budget, and how far each face departs from the clip's own
neutral (for peak-frame selection)."""
from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from PIL import Image

Box = tuple[int, int, int, int]  # x, y, width, height in the frame's pixels
DETECTORS = {"haar": "haarcascade_frontalface_default.xml"}
DETECT_WIDTH = 640  # frames are searched at this width at most (the cascade's cost grows with area)
CASCADE_LOCK = threading.Lock()  # one CascadeClassifier object is not safe across threads
MIN_FACE_SHARE = 0.03  # faces narrower than this share of the searched frame are ignored (mostly false hits)
MATCH_WIDTH = 24  # a face is matched at about the cascade's own window size: enough to tell it apart, cheap
MATCH_MIN = 0.8  # normalised correlation that counts as the same face (a moved face scores ~0.95)
REACH = (4.0, 1.0)  # how far a face is looked for in the next frame, in face widths and heights
NEAR = (0.75, 0.5)  # the first, small search: this far around where the face's last step would take it
FOLLOWED = 4  # faces followed at most (largest first); a two-shot's main face is among them


@lru_cache(maxsize=4)
def _cascade(detector: str):
    import cv2

    if detector not in DETECTORS:
        raise ValueError(f"unknown face detector {detector!r}; choose one of {', '.join(DETECTORS)}")
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + DETECTORS[detector])
    if cascade.empty():
        raise RuntimeError(f"OpenCV could not load its {DETECTORS[detector]}")
    return cascade


Picture = Image.Image | np.ndarray  # a frame, or its grey (luma) plane as decoded


def grey(image: Picture) -> np.ndarray:
    """The frame's grey pixels (a decoded luma plane is used as it is: the cascade, the matching and the
    peak scores each normalise contrast, so studio-range luma and PIL's "L" find the same faces)."""
    return image if isinstance(image, np.ndarray) else np.asarray(image.convert("L"))


def detect(image: Picture, detector: str = "haar") -> list[Box]:
    """Face boxes in one frame, largest first."""
    import cv2

    gray = grey(image)
    height, width = gray.shape
    scale = min(1.0, DETECT_WIDTH / width)
    if scale < 1.0:  # area averaging: as sharp as the cascade needs, and cheaper for it than bicubic detail
        gray = cv2.resize(gray, (max(1, round(width * scale)), max(1, round(height * scale))),
                          interpolation=cv2.INTER_AREA)
    side = max(20, int(MIN_FACE_SHARE * gray.shape[1]))  # no histogram equalisation: flat backgrounds swamp it
    with CASCADE_LOCK:
        found = _cascade(detector).detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(side, side))
    boxes = [tuple(int(round(v / scale)) for v in box) for box in (found if len(found) else [])]
    return sorted(boxes, key=lambda b: -b[2] * b[3])


def find_main(images: Sequence[Picture], detector: str = "haar", stride: int = 0) -> list[Box | None]:
    """The main face in each frame. A frame is searched whole (the expensive step) only where the faces of
    the frame before it cannot all be matched near where they were, by appearance (normalised correlation
    with the face as the cascade last found it, at a small scale); `stride` > 0 also searches every
    `stride`-th frame whole, for faces that enter later."""
    found: list[list[Box]] = []
    models: list[tuple[Box, np.ndarray, Box]] = []  # each face followed: where, its look when detected, where before
    grays = [grey(image) for image in images]
    for i, gray in enumerate(grays):
        moved = [_follow(gray, box, look, before) for box, look, before in models] if models else None
        if moved is not None and all(moved) and not (stride > 0 and i % stride == 0):
            models = [(new, look, box) for new, (box, look, _) in zip(moved, models, strict=True)]
            found.append(sorted(moved, key=lambda b: -b[2] * b[3]))
            continue
        boxes = detect(gray, detector)
        models = [(box, _look(gray, box), box) for box in boxes[:FOLLOWED]]
        found.append(boxes)
    _follow_back(grays, found)
    return track(found)


def _follow_back(grays: Sequence[np.ndarray], found: list[list[Box]]) -> None:
    """A frame where the search found no face takes the next frame's largest face where it is clearly
    there (the cascade misses a face near its smallest size in one frame and finds it in the next)."""
    for i in range(len(found) - 2, -1, -1):
        if not found[i] and found[i + 1]:
            box = found[i + 1][0]
            back = _match(grays[i], box, _look(grays[i + 1], box), REACH)
            found[i] = [back] if back else []


def _follow(gray: np.ndarray, box: Box, look: np.ndarray, before: Box) -> Box | None:
    """The face's box in the next frame: first looked for near where its last step would take it (a
    search a fifth the size, enough for steady motion), then anywhere within REACH of its last place."""
    x, y, w, h = box
    guess = (x + x - before[0], y + y - before[1], w, h)
    return _match(gray, guess, look, NEAR) or _match(gray, box, look, REACH)


def _look(gray: np.ndarray, box: Box, size: tuple[int, int] | None = None) -> np.ndarray:
    """The grey pixels of `box` at the matching scale (or at `size`)."""
    import cv2

    x, y, w, h = box
    scale = MATCH_WIDTH / w
    size = size or (MATCH_WIDTH, max(1, round(h * scale)))
    return cv2.resize(gray[max(0, y): y + h, max(0, x): x + w], size, interpolation=cv2.INTER_AREA)


def _match(gray: np.ndarray, box: Box, look: np.ndarray, reach: tuple[float, float]) -> Box | None:
    """Where the face with `look` is within `reach` (face widths, heights) of `box` in the grey frame,
    when it is clearly there."""
    import cv2

    x, y, w, h = box
    reach_x, reach_y = int(reach[0] * w), int(reach[1] * h)
    left, top = max(0, x - reach_x), max(0, y - reach_y)
    right, bottom = min(gray.shape[1], x + w + reach_x), min(gray.shape[0], y + h + reach_y)
    scale = MATCH_WIDTH / w
    area = (max(1, round((right - left) * scale)), max(1, round((bottom - top) * scale)))
    if area[0] < look.shape[1] or area[1] < look.shape[0]:
        return None  # the face was at the edge and the frame ends there
    region = _look(gray, (left, top, right - left, bottom - top), area)
    scores = cv2.matchTemplate(region, look, cv2.TM_CCOEFF_NORMED)
    _, best, _, (bx, by) = cv2.minMaxLoc(scores)
    if not best >= MATCH_MIN:  # also when the look is flat (no correlation is defined)
        return None
    return (left + int(round(bx / scale)), top + int(round(by / scale)), w, h)


def fill_gaps(boxes: Sequence[Box | None]) -> list[Box | None]:
    """Each frame without a box takes the nearest frame's (the earlier one on a tie)."""
    known = [i for i, b in enumerate(boxes) if b is not None]
    if not known:
        return list(boxes)
    return [b if b is not None else boxes[min(known, key=lambda k, i=i: (abs(k - i), k))]
            for i, b in enumerate(boxes)]


def iou(a: Box, b: Box) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0, x2 - x1) * max(0, y2 - y1)
    return inter / float(a[2] * a[3] + b[2] * b[3] - inter) if inter else 0.0


def track(found: Sequence[list[Box]]) -> list[Box | None]:
    """The main face in each frame: the largest face of the clip starts the track; each other frame
    takes the face overlapping its nearest tracked neighbour most, else the one closest to it."""
    sizes = [(boxes[0][2] * boxes[0][3], i) for i, boxes in enumerate(found) if boxes]
    if not sizes:
        return [None] * len(found)
    seed = max(sizes)[1]
    chosen: list[Box | None] = [None] * len(found)
    chosen[seed] = found[seed][0]
    for order in (range(seed + 1, len(found)), range(seed - 1, -1, -1)):  # outwards from the seed
        last = chosen[seed]
        for i in order:
            if found[i]:
                chosen[i] = last = max(found[i], key=lambda b, ref=last: (iou(b, ref), -_distance(b, ref)))
    return chosen


def _distance(a: Box, b: Box) -> float:
    return math.hypot(a[0] + a[2] / 2 - b[0] - b[2] / 2, a[1] + a[3] / 2 - b[1] - b[3] / 2)


def crop_side(max_pixels: int | None) -> int:
    """A square crop's side at the pixel budget, a multiple of 28 (the vision tower's patch merge)."""
    return max(28, math.isqrt(max_pixels or 448 * 448) // 28 * 28)


def square(box: Box, margin: float, width: int, height: int) -> Box:
    """The square around the face with `margin` of its side on each edge, kept inside a width x height
    frame where it fits."""
    x, y, w, h = box
    size = min(int(max(w, h) * (1 + 2 * margin)), width, height)
    cx, cy = x + w / 2, y + h / 2
    left = int(min(max(0, cx - size / 2), width - size))
    top = int(min(max(0, cy - size / 2), height - size))
    return left, top, size, size


def resized(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """`image` at `size`: area averaging when shrinking, bicubic when enlarging (OpenCV's, several times
    cheaper than PIL's on a 720p frame or a 448 px crop)."""
    import cv2

    if image.size == size:
        return image
    shrink = size[0] * size[1] < image.width * image.height
    return Image.fromarray(cv2.resize(np.asarray(image if image.mode == "RGB" else image.convert("RGB")), size,
                                      interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC))


def letterbox(image: Image.Image, side: int) -> Image.Image:
    """The whole frame fitted into a side x side square (a frame without a face, among face crops that
    must share one size)."""
    scale = side / max(image.width, image.height)
    fitted = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.BICUBIC)
    canvas = Image.new("RGB", (side, side))
    canvas.paste(fitted, ((side - fitted.width) // 2, (side - fitted.height) // 2))
    return canvas


def beside(frame: Image.Image, face: Image.Image, max_pixels: int | None) -> Image.Image:
    """The whole frame with the face crop to its right, one image at the pixel budget (`--visual both`:
    every frame of a video must share one size)."""
    face = face.resize((frame.height, frame.height), Image.BICUBIC)
    canvas = Image.new("RGB", (frame.width + frame.height, frame.height))
    canvas.paste(frame, (0, 0))
    canvas.paste(face, (frame.width, 0))
    from mllm_mer.media.decode import fit_size

    return canvas.resize(fit_size(canvas.width, canvas.height, max_pixels), Image.BICUBIC)


def departure(faces: Sequence[Picture], size: int = 48) -> np.ndarray:
    """How far each face departs from the clip's own neutral: the mean absolute difference of its
    grey, contrast-normalised thumbnail from the per-pixel median over the clip's faces. The median
    is the neutral because an expression peak is, by definition, the brief exception."""
    import cv2

    thumbs = np.stack([cv2.resize(grey(f), (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
                       for f in faces])
    thumbs = (thumbs - thumbs.mean(axis=(1, 2), keepdims=True)) / (thumbs.std(axis=(1, 2), keepdims=True) + 1e-3)
    neutral = np.median(thumbs, axis=0)
    return np.abs(thumbs - neutral).mean(axis=(1, 2))
