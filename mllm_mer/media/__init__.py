"""Media stage: a Sample's files -> frames, transcript and vocal cues for the prompt."""
from __future__ import annotations

import os
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from mllm_mer.media.errors import MediaError, WindowOutside
from mllm_mer.types import MediaInputs, MediaSettings, Sample

__all__ = ["MediaError", "MediaSettings", "load_media", "load_image"]


def load_image(source) -> Image.Image:
    if isinstance(source, Image.Image):
        return source.convert("RGB")
    path = str(source)
    if not os.path.exists(path):
        raise MediaError(path, "file not found")
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except Image.DecompressionBombError:
        raise MediaError(path, "image too large (more pixels than a decompression-bomb guard allows)") from None
    except (UnidentifiedImageError, OSError) as error:
        raise MediaError(path, f"not a readable image ({error})") from None


def check_allowed(sample: Sample, roots: tuple[str, ...]) -> None:
    """Media paths must lie inside `roots`; the message does not say whether an outside path exists."""
    resolved = [Path(r).resolve() for r in roots]
    for value in (sample.video, sample.audio, sample.image if isinstance(sample.image, str) else None,
                  *(f for f in sample.frames if isinstance(f, str))):
        if value and not any(Path(value).resolve().is_relative_to(r) for r in resolved):
            raise MediaError(Path(value).name, "is outside the folders this app may read")


def _unplan(sample: Sample, settings: MediaSettings) -> None:
    """This sample will not read its video frames; a shared pass that planned them need not hold them."""
    if sample.video:
        from mllm_mer.media.windows import sample_window, unplan

        unplan(sample.video, sample_window(sample, settings), settings.max_pixels)


def load_media(sample: Sample, settings: MediaSettings, modalities: tuple[str, ...] = ("text", "video", "audio")
               ) -> MediaInputs:
    """Decode what the prompt will use; MediaError names the file and the reason."""
    from mllm_mer.media import audio as audio_mod
    from mllm_mer.media import video as video_mod

    cache_gb = settings.media_cache_gb
    try:
        if settings.allowed_roots:
            check_allowed(sample, settings.allowed_roots)
        # Each file is opened once to see what it holds (missing or broken files fail here).
        video_streams = video_mod.probe(sample.video, cache_gb) if sample.video else (False, False)
        audio_streams = video_mod.probe(sample.audio, cache_gb) if sample.audio else (False, False)
    except MediaError:
        _unplan(sample, settings)
        raise
    if not video_streams[0]:
        _unplan(sample, settings)
    frames: tuple = ()
    times: tuple[float, ...] = ()
    notes: list[str] = []
    image = None
    clip = None
    fps = duration = None
    if "video" in modalities:
        if sample.frames:
            frames = tuple(load_image(f) for f in sample.frames)
        elif video_streams[0]:
            try:
                clip = video_mod.read_frames(sample.video, settings.max_frames, settings.fps, sample.start,
                                             sample.end, settings.max_pixels, settings.keyframe_snap, cache_gb)
            except WindowOutside as outside:  # e.g. a subtitle cue past the recording: the words still count
                clip = None
                notes.append(f"{Path(sample.video).name}: {outside.reason}")
        if clip is not None:
            frames, times, fps, duration = clip.images, clip.times, clip.fps, clip.duration
            if clip.declared and clip.declared - clip.duration > max(0.5, 0.1 * clip.declared):
                notes.append(f"{Path(sample.video).name}: truncated, only {clip.duration:.1f} s of "
                             f"{clip.declared:.1f} s could be read")
        if sample.image:
            image = load_image(sample.image)

    transcript = None
    cues = None
    # A separate audio file is the utterance already; a window applies to the video's own track.
    sound, window = ((sample.audio, (None, None)) if audio_streams[1]
                     else (sample.video, (sample.start, sample.end)) if video_streams[1] else (None, (None, None)))
    need_asr = not sample.transcript and settings.asr_model and "text" in modalities
    need_cues = settings.vocal_cues and "audio" in modalities and not sample.vocal_cues
    if sound and (need_asr or need_cues):
        try:
            waveform = audio_mod.load_audio(sound, *window, cache_gb=cache_gb)
        except WindowOutside as outside:  # past the end of the recording: nothing to hear, the words still count
            notes.append(f"{Path(sound).name}: {outside.reason}")
            need_asr = need_cues = False
        if need_asr:
            from mllm_mer.media.asr import transcribe

            transcript = transcribe(waveform, settings.asr_model)
        if need_cues:
            from mllm_mer.media.cues import vocal_cues

            cues = vocal_cues(waveform, sample.transcript or transcript).describe()
    if "video" in modalities and sample.video and not frames and not any(video_streams):
        raise MediaError(sample.video, "no video or audio stream (zero-length or empty media)")
    return MediaInputs(frames=frames, frame_times=times, image=image, vocal_cues=cues, transcript=transcript,
                       fps=fps, duration=duration, notes=tuple(notes))
