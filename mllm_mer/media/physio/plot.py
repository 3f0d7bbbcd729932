"""A window's physiological traces drawn as one compact image (`--physio-view plot|both`), for models that read
images: one strip per channel type, time on a shared axis, each strip labelled with its type and range.

Drawn with matplotlib's Agg canvas (no display), at a fixed size, so every sample's picture costs the same
image tokens. EEG is left out (dozens of electrodes would fill the picture; its band powers are in words).
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from mllm_mer.media.physio.signals import Recording

SIZE = (448, 280)  # pixels: 16 x 10 patches of 28 px, a few hundred image tokens on the Qwen families
DRAWN = ("ecg", "ppg", "eda", "resp", "temp")
MAX_POINTS = 2000  # per strip: enough for every beat of a minute at this width, and cheap to draw
NAMES = {"ecg": "ECG", "ppg": "PPG", "eda": "skin conductance", "resp": "breathing", "temp": "skin temperature"}


def draw_traces(recording: Recording) -> Image.Image | None:
    """The window's channels as one RGB image; None when it holds none of the drawn types."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    channels = [c for kind in DRAWN for c in recording.channels if c.type == kind][:4]
    if not channels:
        return None
    figure = Figure(figsize=(SIZE[0] / 100, SIZE[1] / 100), dpi=100)
    canvas = FigureCanvasAgg(figure)  # its own canvas: no global backend, safe beside the app's threads
    axes = figure.subplots(len(channels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, channel in zip(axes, channels, strict=True):
        step = max(1, channel.values.size // MAX_POINTS)
        values = channel.values[::step]
        times = np.arange(values.size) * step / channel.rate
        ax.plot(times, values, linewidth=0.7, color="black")
        ax.set_yticks([])
        ax.set_ylabel(NAMES[channel.type], fontsize=6, rotation=0, ha="right", va="center")
        ax.tick_params(axis="x", labelsize=6, length=2)
        for side in ("top", "right", "left"):
            ax.spines[side].set_visible(False)
    axes[-1].set_xlabel("seconds", fontsize=6)
    figure.subplots_adjust(left=0.22, right=0.98, top=0.97, bottom=0.14, hspace=0.25)
    canvas.draw()
    return Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3].copy())
