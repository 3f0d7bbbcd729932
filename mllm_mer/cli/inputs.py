"""What `predict` is given, checked before any model loads: an input at all, and each file in the role its
flag names (a sound file given as --video would run with no frames, a still with one, silently)."""
from __future__ import annotations

from pathlib import Path

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


def check_predict_input(given) -> None:
    """ValueError, one line naming the flag, for an input `predict` cannot classify as given."""
    from mllm_mer.media.video import probe

    if not ((given.transcript or "").strip() or given.video or given.audio or given.image or given.frames_dir
            or given.physio):
        raise ValueError("predict needs an input: --transcript TEXT, --video FILE, --audio FILE, --image FILE, "
                         "--frames-dir DIR or --physio FILE")
    if given.video:
        if Path(given.video).suffix.lower() in IMAGE_SUFFIXES:
            raise ValueError(f"--video {given.video}: a still image, not a video; pass it as --image")
        has_video, has_audio = probe(given.video)
        if not has_video:
            raise ValueError(f"--video {given.video}: this file has no video track"
                             + ("; a sound file goes to --audio" if has_audio else ""))
    if given.audio:
        if Path(given.audio).suffix.lower() in IMAGE_SUFFIXES:
            raise ValueError(f"--audio {given.audio}: a still image, not a sound file; pass it as --image")
        if not probe(given.audio)[1]:
            raise ValueError(f"--audio {given.audio}: this file has no audio track")
