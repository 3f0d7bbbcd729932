"""Audio as 16 kHz mono float32, from an audio file or a video's audio track (PyAV)."""
from __future__ import annotations

import av
import numpy as np

from mllm_mer.media.errors import MediaError, WindowOutside
from mllm_mer.media.video import _open

SAMPLE_RATE = 16_000


def load_audio(path: str, start: float | None = None, end: float | None = None) -> np.ndarray:
    """The (windowed) audio track resampled to 16 kHz mono; MediaError when there is none."""
    with _open(path) as container:
        if not container.streams.audio:
            raise MediaError(path, "no audio track")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        if start:
            container.seek(int(start / stream.time_base), stream=stream, backward=True)
        chunks, first_time = [], None
        try:
            for frame in container.decode(stream):
                if first_time is None and frame.time is not None:
                    first_time = frame.time
                if end is not None and frame.time is not None and frame.time > end:
                    break
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except av.error.FFmpegError as error:
            if not chunks:
                raise MediaError(path, f"corrupt audio stream ({error})") from None
    audio = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    if start and first_time is not None:  # trim the seek's lead-in
        audio = audio[max(0, int(round((start - first_time) * SAMPLE_RATE))):]
    if end is not None:
        audio = audio[: max(0, int(round((end - (start or 0.0)) * SAMPLE_RATE)))]
    if audio.size == 0 and start:
        raise WindowOutside(path, f"no sound in the window {start:.1f}-{end if end is not None else start:.1f} s")
    if audio.size == 0:
        raise MediaError(path, "zero-length audio")
    return audio
