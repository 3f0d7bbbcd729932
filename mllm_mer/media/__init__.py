"""Media stage: a Sample's files -> frames, transcript and vocal cues for the prompt."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from mllm_mer.core.types import MODALITIES, MediaInputs, MediaSettings, Sample
from mllm_mer.media.errors import MediaError, WindowOutside

__all__ = ["MediaError", "MediaSettings", "load_media", "load_image"]


def load_image(source) -> Image.Image:
    if isinstance(source, Image.Image):
        return source.convert("RGB")
    from mllm_mer.media.decode import MAX_SOURCE_PIXELS, check_regular_file

    path = str(source)
    check_regular_file(path)
    try:
        with warnings.catch_warnings():  # an oversized image is refused below, not warned about
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
        with img:
            # One pixel budget for stills and video frames, read from the header before any decoding.
            if img.width * img.height > MAX_SOURCE_PIXELS:
                raise MediaError(path, f"image of {img.width}x{img.height} pixels (at most {MAX_SOURCE_PIXELS} "
                                       "are decoded, as for video frames)")
            return img.convert("RGB")
    except Image.DecompressionBombError:
        raise MediaError(path, "image too large (more pixels than a decompression-bomb guard allows)") from None
    except (UnidentifiedImageError, OSError) as error:
        raise MediaError(path, f"not a readable image ({error})") from None


def check_allowed(sample: Sample, roots: tuple[str, ...]) -> None:
    """Media paths must lie inside `roots`; the message does not say whether an outside path exists."""
    resolved = [Path(r).resolve() for r in roots]
    for value in (sample.video, sample.audio, sample.physio, sample.image if isinstance(sample.image, str) else None,
                  *(f for f in sample.frames if isinstance(f, str))):
        if value and not any(Path(value).resolve().is_relative_to(r) for r in resolved):
            raise MediaError(Path(value).name, "is outside the folders this app may read")


def _unplan(sample: Sample, settings: MediaSettings) -> None:
    """This sample will not read its video frames; a shared pass that planned them need not hold them."""
    if sample.video:
        from mllm_mer.media.decode import sample_window
        from mllm_mer.media.windows import unplan

        unplan(sample.video, sample_window(sample, settings), settings.max_pixels)


def load_media(sample: Sample, settings: MediaSettings, modalities: tuple[str, ...] = MODALITIES
               ) -> MediaInputs:
    """Decode what the prompt will use; MediaError names the file and the reason."""
    from mllm_mer.media import video as video_mod

    cache_gb = settings.media_cache_gb
    try:
        if settings.allowed_roots:
            check_allowed(sample, settings.allowed_roots)
        from mllm_mer.media.decode import check_times

        check_times(sample)
        # Each file is opened once to see what it holds (missing or broken files fail here).
        video_streams = video_mod.probe(sample.video, cache_gb) if sample.video else (False, False)
        audio_streams = video_mod.probe(sample.audio, cache_gb) if sample.audio else (False, False)
    except MediaError:
        _unplan(sample, settings)
        raise
    if not video_streams[0]:
        _unplan(sample, settings)
    notes: list[str] = []
    if sample.audio and not audio_streams[1]:  # e.g. an image saved as .wav: say so, never ignore it silently
        notes.append(f"{Path(sample.audio).name}: no audio stream in it, so no vocal evidence from it")
    if sample.video and video_streams[1] and not video_streams[0] and "video" in modalities:
        notes.append(f"{Path(sample.video).name}: no video stream in it (sound only), so no frames from it")
    seen = _read_visual(sample, settings, video_streams[0], notes) if "video" in modalities else _Visual()
    transcript, cues, features = _read_sound(sample, settings, modalities, video_streams[1], audio_streams[1], notes)
    physio_cues, physio_features, physio_plot = _read_physio(sample, settings, modalities, notes)
    if "video" in modalities and sample.video and not seen.frames and not any(video_streams):
        raise MediaError(sample.video, "no video or audio stream (zero-length or empty media)")
    return MediaInputs(frames=seen.frames, frame_times=seen.times, image=seen.image, vocal_cues=cues,
                       transcript=transcript, fps=seen.fps, duration=seen.duration, notes=tuple(notes),
                       vocal_features=features, physio_cues=physio_cues, physio_features=physio_features,
                       physio_plot=physio_plot, physio_view=settings.physio_view,
                       visual=settings.visual if seen.frames and not sample.frames else "frames")


@dataclass
class _Visual:
    frames: tuple = ()
    times: tuple[float, ...] = ()
    image: Image.Image | None = None
    fps: float | None = None
    duration: float | None = None


def _read_visual(sample: Sample, settings: MediaSettings, has_video: bool, notes: list[str]) -> _Visual:
    """Frames (given, or sampled from the clip) and the still image; notes what was cut short or outside."""
    seen = _Visual()
    clip = None
    if sample.frames:
        seen.frames = tuple(load_image(f) for f in sample.frames)
    elif has_video:
        try:
            clip = _read_clip(sample, settings, notes)
        except WindowOutside as outside:  # e.g. a subtitle cue past the recording: the words still count
            notes.append(f"{Path(sample.video).name}: {outside.reason}")
    if clip is not None:
        seen.frames, seen.times, seen.fps, seen.duration = clip.images, clip.times, clip.fps, clip.duration
        if clip.declared and clip.declared - clip.duration > max(0.5, 0.1 * clip.declared):
            notes.append(f"{Path(sample.video).name}: truncated, only {clip.duration:.1f} s of "
                         f"{clip.declared:.1f} s could be read")
        if (damage := clip.damage_note(Path(sample.video).name)) is not None:
            notes.append(damage)
    if sample.image:
        seen.image = load_image(sample.image)
    return seen


def _read_clip(sample: Sample, settings: MediaSettings, notes: list[str]):
    """The window's frames: as sampled, or through the front end (faces, peak selection)."""
    from mllm_mer.media import frontend
    from mllm_mer.media import video as video_mod
    from mllm_mer.media.decode import sample_window

    if not frontend.active(settings):
        return video_mod.read_frames(sample.video, settings.max_frames, settings.fps, sample.start, sample.end,
                                     settings.max_pixels, settings.keyframe_snap, settings.media_cache_gb)
    _unplan(sample, settings)  # the front end decodes its own candidates: a shared pass need not hold these
    clip, noticed = frontend.read_visual(sample.video, sample_window(sample, settings), settings)
    notes.extend(noticed)
    return clip


def _read_physio(sample: Sample, settings: MediaSettings, modalities: tuple[str, ...], notes: list[str]
                 ) -> tuple[str | None, dict | None, Image.Image | None]:
    """(cue words, numbers, the traces drawn) of the sample's physiological window, where the prompt uses them."""
    if not sample.physio or "physio" not in modalities:
        return None, None, None
    from mllm_mer.media.physio import physio_for, physio_plot

    words, numbers = physio_for(sample, settings, notes)
    return words, numbers, physio_plot(sample, settings, notes) if settings.physio_view != "text" else None


def _read_sound(sample: Sample, settings: MediaSettings, modalities: tuple[str, ...], video_sound: bool,
                file_sound: bool, notes: list[str]) -> tuple[str | None, str | None, dict | None]:
    """(transcript from ASR, vocal cues, their numbers) from the sample's sound, where the prompt uses them."""
    from mllm_mer.media import audio as audio_mod

    # A separate audio file is the utterance already, unless it is the only recording (a dialogue's
    # --audio); a window applies to the video's own track.
    own_window = (sample.start, sample.end) if not sample.video else (None, None)
    sound, window = ((sample.audio, own_window) if file_sound
                     else (sample.video, (sample.start, sample.end)) if video_sound else (None, (None, None)))
    need_asr = not sample.transcript and settings.asr_model and "text" in modalities
    need_cues = settings.vocal_cues and "audio" in modalities and not sample.vocal_cues
    if not sound or not (need_asr or need_cues):
        return None, None, None
    most = audio_mod.MAX_SOUND_SECONDS
    try:
        waveform, full = audio_mod.load_audio_upto(sound, *window, most, settings.media_cache_gb, notes)
    except WindowOutside as outside:  # past the end of the recording: nothing to hear, the words still count
        notes.append(f"{Path(sound).name}: {outside.reason}")
        return None, None, None
    if full is not None:  # what was analysed is the source the cues are cached under
        window = (window[0], (window[0] or 0.0) + most)
        of = f" of {full:.1f} s" if full != float("inf") else ""  # a header may not give the length
        notes.append(f"{Path(sound).name}: only the first {most:g} s{of} of sound analysed (at most {most:g} s "
                     "per sample)")
    transcript = cues = features = None
    if need_asr:
        from mllm_mer.media.asr import transcribe
        from mllm_mer.media.vad import trim_silence

        transcript = transcribe(trim_silence(waveform)[0], settings.asr_model)  # silence only invites hallucination
    if need_cues:
        from mllm_mer.media.speech_cues import cues_for

        cues, features = cues_for(waveform, (sound, *window), sample.transcript or transcript,
                                  sample.metadata.get("vocal_baseline"), settings.media_cache_gb, notes)
    return transcript, cues, features
