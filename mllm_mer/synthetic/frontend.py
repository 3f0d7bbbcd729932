"""Test material for the front end: real synthesised speech (espeak-ng) and clips of a real portrait
(skimage's astronaut) moving across a 720p frame, with an optional stretch where the face changes."""
from __future__ import annotations

import io
import shutil
import subprocess
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

SAMPLE_RATE = 16_000


def speak(text: str, pitch: int = 50, rate: int = 175) -> np.ndarray:
    """`text` spoken by espeak-ng (pitch 0-99, rate in words per minute) as 16 kHz mono float32."""
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not installed (scripts/install.sh installs it)")
    done = subprocess.run(["espeak-ng", "-p", str(pitch), "-s", str(rate), "--stdout", text],
                          capture_output=True, check=True, timeout=60)
    with av.open(io.BytesIO(done.stdout), format="wav") as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        chunks = [out.to_ndarray().reshape(-1) for frame in container.decode(audio=0)
                  for out in resampler.resample(frame)]
        chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
    return np.concatenate(chunks).astype(np.float32)


def write_speech(path: str | Path, pieces: list[np.ndarray | float]) -> Path:
    """A 16 kHz WAV of waveforms and silences (a float is that many seconds of silence)."""
    wave = np.concatenate([np.zeros(int(p * SAMPLE_RATE), np.float32) if isinstance(p, float) else p
                           for p in pieces])
    pcm = (np.clip(wave, -1, 1) * 32767).astype(np.int16)
    with av.open(str(path), "w", format="wav") as container:
        stream = container.add_stream("pcm_s16le", rate=SAMPLE_RATE)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(pcm[None, :], format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return Path(path)


def portrait(side: int = 256) -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut()).resize((side, side), Image.BICUBIC)


def write_frames(path: str | Path, frame_at: Callable[[int], Image.Image], n_frames: int, fps: int = 10,
                 size: tuple[int, int] = (1280, 720)) -> Path:
    """An H.264 mp4 whose frame i is `frame_at(i)`."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = size[0], size[1], "yuv420p"
        video.options = {"crf": "18", "preset": "ultrafast", "g": str(fps)}
        for i in range(n_frames):
            frame = av.VideoFrame.from_image(frame_at(i).convert("RGB"))
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            container.mux(video.encode(frame))
        container.mux(video.encode())
    return Path(path)


def face_clip(path: str | Path, seconds: float = 3.0, fps: int = 10, side: int = 256, moving: bool = True,
              changed: tuple[float, float] | None = None, size: tuple[int, int] = (1280, 720)) -> Path:
    """The portrait on a plain 720p background, sliding left to right when `moving`; during `changed`
    (seconds) the lower half of the face is inverted (a strong, brief change on the face region)."""
    face = portrait(side)
    n_frames = int(round(seconds * fps))

    def frame_at(i: int) -> Image.Image:
        canvas = Image.new("RGB", size, (90, 110, 130))
        x = int((size[0] - side) * i / max(1, n_frames - 1)) if moving else (size[0] - side) // 2
        shown = face
        if changed and changed[0] <= i / fps < changed[1]:
            shown = face.copy()
            box = tuple(int(v * side / 512) for v in (170, 130, 275, 185))  # mouth and chin of the astronaut
            shown.paste(Image.eval(face.crop(box), lambda v: 255 - v), box[:2])
        canvas.paste(shown, (x, (size[1] - side) // 2))
        return canvas

    return write_frames(path, frame_at, n_frames, fps, size)
