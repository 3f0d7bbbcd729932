"""Synthetic clips with known content, for tests, demos and benchmarks (PyAV writes them).

Frame i is painted a colour that encodes i (`frame_colour`), so a test can tell
which frames came back; the audio is a sine tone (or silence) of known pitch and level.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def frame_colour(index: int) -> tuple[int, int, int]:
    """Index -> colour on a 16-level grid per channel (robust to lossy coding)."""
    return ((index % 16) * 16 + 8, (index // 16 % 16) * 16 + 8, (index // 256 % 16) * 16 + 8)


def frame_index(rgb) -> int:
    r, g, b = (int(round((float(c) - 8) / 16)) for c in rgb[:3])
    return r + 16 * g + 256 * b


def write_clip(path: str | Path, seconds: float = 2.0, fps: int = 10, size: tuple[int, int] = (64, 48),
               tone_hz: float | None = 220.0, amplitude: float = 0.3, audio: bool = True, gop: int = 12,
               sample_rate: int = 16_000, colour=None, texture: bool = False, preset: str = "ultrafast",
               crf: int = 12, speech: np.ndarray | None = None) -> Path:
    """An H.264 mp4 (+AAC audio unless audio=False; tone_hz=None gives silence; `speech`, a waveform at
    `sample_rate`, replaces the tone, padded with silence or cut to the clip's length).

    texture=True overlays moving noise on the lower half, so decoding costs what real footage
    costs (flat colour decodes almost for free); the top rows keep the index colour.
    """
    path = Path(path)
    width, height = size
    n_frames = int(round(seconds * fps))
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"crf": str(crf), "preset": preset, "g": str(gop), "keyint_min": str(gop),
                         "sc_threshold": "0"}
        sound = None
        if n_frames == 0:
            container.start_encoding()  # write the header: a valid, zero-length file
        if audio:
            sound = container.add_stream("aac", rate=sample_rate)
            sound.layout = "mono"
        noise = np.random.default_rng(0).integers(0, 256, (height, width * 2, 3), dtype=np.uint8) if texture else None
        for i in range(n_frames):
            pixel = colour(i) if colour else frame_colour(i)
            image = np.empty((height, width, 3), np.uint8)
            image[:] = pixel
            if noise is not None:
                shift = (7 * i) % width
                image[height // 2:] = noise[height // 2:, shift:shift + width]
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            container.mux(video.encode(frame))
        container.mux(video.encode())
        if sound is not None:
            t = np.arange(int(seconds * sample_rate)) / sample_rate
            wave = amplitude * np.sin(2 * np.pi * tone_hz * t) if tone_hz else np.zeros_like(t)
            if speech is not None:
                wave = np.zeros_like(t)
                wave[:min(t.size, speech.size)] = speech[:t.size]
            wave = wave.astype(np.float32)
            chunk = 1024
            for start in range(0, wave.size, chunk):
                piece = wave[start:start + chunk]
                frame = av.AudioFrame.from_ndarray(piece[None, :], format="flt", layout="mono")
                frame.sample_rate = sample_rate
                frame.pts = start
                container.mux(sound.encode(frame))
            container.mux(sound.encode())
    return path


def write_wav(path: str | Path, seconds: float = 1.0, tone_hz: float | None = 220.0, amplitude: float = 0.3,
              sample_rate: int = 16_000, parts: list[tuple[float, float | None]] | None = None,
              shape: str = "sine") -> Path:
    """A mono WAV: one tone (None: silence), or `parts`, a sequence of (seconds, tone or None).

    `shape` "square" gives a square wave of the sine's loudness (equal RMS): same pitch, other timbre."""
    path = Path(path)
    pieces = []
    for length, tone in parts or [(seconds, tone_hz)]:
        t = np.arange(int(length * sample_rate)) / sample_rate
        wave = np.sin(2 * np.pi * tone * t) if tone else np.zeros_like(t)
        if shape == "square":
            wave = np.sign(wave) / np.sqrt(2)
        elif shape != "sine":
            raise ValueError(f"shape must be sine or square, not {shape!r}")
        pieces.append(amplitude * wave)
    wave = np.concatenate(pieces)
    pcm = (wave * 32767).astype(np.int16)
    with av.open(str(path), "w", format="wav") as container:
        stream = container.add_stream("pcm_s16le", rate=sample_rate)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(pcm[None, :], format="s16", layout="mono")
        frame.sample_rate = sample_rate
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path
