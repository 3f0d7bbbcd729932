"""The visual front end: face crops instead of or beside whole frames, and peak-frame selection.

Candidates are decoded once and kept in YUV (media.stills), at a resolution the faces survive (a 720p
two-shot at the model's budget leaves a few dozen pixels per face); the main face is detected and tracked
on their luma, only what is shown becomes RGB, and the result (images, true times, notes) is kept in the
disk cache under a key that carries every front-end setting.
"""
from __future__ import annotations

import os
from pathlib import Path

from mllm_mer.core.types import MediaSettings
from mllm_mer.media import faces as faces_mod
from mllm_mer.media.decode import Frames, Window, fit_size, frames_key
from mllm_mer.media.frame_cache import media_cache

CANDIDATES = 4  # peak selection scores this many candidates per frame of the budget
FACE_SOURCE_PIXELS = 1280 * 720  # faces are cropped from frames decoded at up to this size
PEAK_SOURCE_PIXELS = 640 * 360  # peak selection alone needs no more than the face detector searches
FRONT_END_VERSION = 3  # raise when the same settings give other crops or choices
FRONT_END_NAMES = ("visual", "frame_selection", "face_detector", "face_margin")


def front_end(settings: MediaSettings) -> dict[str, object]:
    """The front-end settings that differ from their defaults (what cache keys and fingerprints carry,
    so that runs and caches from before the front end stay valid)."""
    defaults = MediaSettings()
    return {n: getattr(settings, n) for n in FRONT_END_NAMES if getattr(settings, n) != getattr(defaults, n)}


def active(settings: MediaSettings) -> bool:
    return settings.visual != "frames" or settings.frame_selection != "uniform"


def read_visual(path: str, window: Window, settings: MediaSettings) -> tuple[Frames, tuple[str, ...]]:
    """The frames a clip's window gives under the front-end settings, and what was noticed."""
    cache = media_cache(settings.media_cache_gb)
    key = ("front_end", FRONT_END_VERSION, frames_key(path, window, settings.max_pixels),
           tuple(sorted(front_end(settings).items())))
    if cache is not None and os.path.isfile(path) and (hit := cache.get_frames(key)) is not None:
        return hit, tuple(cache.get_json((*key, "notes")) or ())
    frames, notes = _compute(path, window, settings)
    if cache is not None:
        cache.put_frames(key, frames)
        cache.put_json((*key, "notes"), list(notes))
    return frames, notes


def _compute(path: str, window: Window, settings: MediaSettings) -> tuple[Frames, tuple[str, ...]]:
    from mllm_mer.media.decode import file_key
    from mllm_mer.media.stills import still
    from mllm_mer.media.video import decode_uncached

    faces_wanted = settings.visual != "frames"
    peak = settings.frame_selection == "peak"
    n = window.n * (CANDIDATES if peak else 1)
    fps = window.fps * CANDIDATES if peak and window.fps else window.fps
    pixels = max(FACE_SOURCE_PIXELS if faces_wanted else PEAK_SOURCE_PIXELS, settings.max_pixels or 0)
    # Candidates stay in YUV: the search and the scores read their luma; only what is shown becomes RGB.
    clip = decode_uncached(file_key(path), n, fps, window.start, window.end, pixels, window.keyframe_snap, still)
    stills = list(clip.images)
    greys = [s.grey for s in stills]
    boxes = faces_mod.find_main(greys, settings.face_detector)
    order = list(range(len(stills)))
    if peak and len(stills) > window.n:
        # A frame where the face was missed is scored on its neighbour's box, not as a whole frame
        # (which would always look like the clip's most unusual face).
        regions = [_square(g, b, 0.0) if b else g for g, b in zip(greys, faces_mod.fill_gaps(boxes), strict=True)]
        scores = faces_mod.departure(regions)
        order = sorted(sorted(order, key=lambda i: -scores[i])[: window.n])
    picked = [(stills[i], boxes[i], clip.times[i]) for i in order]
    out = _render(picked, settings)
    name = Path(path).name
    notes = []
    missing = [f"{t:.2f}" for (_, b, t) in picked if b is None]
    if faces_wanted and missing:
        notes.append(f"{name}: no face found at {', '.join(missing)} s; the whole frame is shown there")
    return (Frames(tuple(out), tuple(t for _, _, t in picked), clip.fps, clip.duration, clip.declared, clip.missing),
            tuple(notes))


def _square(gray, box, margin: float):
    left, top, size, _ = faces_mod.square(box, margin, gray.shape[1], gray.shape[0])
    return gray[top: top + size, left: left + size]


def _face(still, box, margin: float, side: int):
    """The face's square crop at side x side; the whole frame letterboxed where no face was found."""
    if box is None:
        return faces_mod.letterbox(still.rgb(), side)
    region = faces_mod.square(box, margin, still.width, still.height)
    return faces_mod.resized(still.rgb(region), (side, side))


def _render(picked, settings: MediaSettings) -> list:
    """Each chosen frame as the prompt shows it: whole (at the budget), the face crop, or both."""
    side = faces_mod.crop_side(settings.max_pixels)
    out = []
    for still, box, _ in picked:
        if settings.visual == "faces":  # no whole frame: converting a 720p frame costs more than its crop
            out.append(_face(still, box, settings.face_margin, side))
            continue
        whole = still.rgb(size=fit_size(still.width, still.height, settings.max_pixels))
        if settings.visual == "frames":
            out.append(whole)
        else:
            out.append(faces_mod.beside(whole, _face(still, box, settings.face_margin, side), settings.max_pixels))
    return out
