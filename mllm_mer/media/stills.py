"""Decoded frames kept in YUV 4:2:0 until they are shown: the face search and the peak scores read the
grey (luma) plane as decoded, and only what the prompt shows (the chosen frames, the face crops) is
converted to RGB, by the same converter (and colour matrix) as frames sampled without the front end.
Converting every candidate to RGB first cost more than decoding it."""
from __future__ import annotations

from dataclasses import dataclass

import av
import numpy as np
from PIL import Image

Region = tuple[int, int, int, int]  # left, top, width, height in the frame's pixels


@dataclass(frozen=True, eq=False)
class Still:
    frame: av.VideoFrame  # yuv420p, as decoded (its buffers outlive the decoder)

    @property
    def width(self) -> int:
        return self.frame.width

    @property
    def height(self) -> int:
        return self.frame.height

    def plane(self, index: int) -> np.ndarray:
        """Plane `index` (0: luma, 1 and 2: the half-size chroma) as a view, without copying."""
        plane = self.frame.planes[index]
        rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
        return rows[:, : plane.width]

    @property
    def grey(self) -> np.ndarray:
        return self.plane(0)

    def rgb(self, region: Region | None = None, size: tuple[int, int] | None = None) -> Image.Image:
        """The frame (or `region` of it, widened to even edges as 4:2:0 needs) in RGB, at `size`."""
        frame = self.frame if region is None else self._cut(*region)
        return frame.to_image() if size is None else frame.to_image(width=size[0], height=size[1])

    def _cut(self, left: int, top: int, w: int, h: int) -> av.VideoFrame:
        """An even-edged region as a frame of its own (same colour matrix)."""
        left, top = left // 2 * 2, top // 2 * 2
        w = max(2, min(w + w % 2, self.width - left) // 2 * 2)
        h = max(2, min(h + h % 2, self.height - top) // 2 * 2)
        half = (slice(top // 2, (top + h) // 2), slice(left // 2, (left + w) // 2))
        packed = np.concatenate([self.plane(0)[top: top + h, left: left + w].reshape(-1),
                                 self.plane(1)[half].reshape(-1), self.plane(2)[half].reshape(-1)])
        frame = av.VideoFrame.from_ndarray(packed.reshape(h * 3 // 2, w), format="yuv420p")
        frame.colorspace, frame.color_range = self.frame.colorspace, self.frame.color_range
        return frame


def still(frame: av.VideoFrame, width: int, height: int) -> Still:
    """A decoded frame as a Still at (even) `width` x `height` (a decoder's convert hook). A frame kept as
    decoded holds the decoder's buffer; a smaller one is a copy, so that the decoder reuses its buffers
    (fresh 720p buffers for 32 candidates cost more in page faults than decoding them)."""
    width, height = max(2, width // 2 * 2), max(2, height // 2 * 2)
    if (frame.width, frame.height, frame.format.name) == (width, height, "yuv420p"):
        return Still(frame)
    if frame.format.name != "yuv420p" or frame.width < width or frame.height < height:
        return Still(frame.reformat(width=width, height=height, format="yuv420p"))
    import cv2

    whole = Still(frame)  # area averaging per plane: cheaper than swscale, and as sharp
    luma = cv2.resize(whole.plane(0), (width, height), interpolation=cv2.INTER_AREA)
    chroma = [cv2.resize(whole.plane(i), (width // 2, height // 2), interpolation=cv2.INTER_AREA) for i in (1, 2)]
    packed = np.concatenate([luma.reshape(-1), chroma[0].reshape(-1), chroma[1].reshape(-1)])
    small = av.VideoFrame.from_ndarray(packed.reshape(height * 3 // 2, width), format="yuv420p")
    small.colorspace, small.color_range = frame.colorspace, frame.color_range
    return Still(small)
