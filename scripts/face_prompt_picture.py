"""Draws docs/face_prompt.png: what a prompt shows of a 720p clip of skimage's astronaut moving across
the frame, with `--visual frames` (top) and `--visual faces` (bottom), from the real media stage.

    .venv/bin/python scripts/face_prompt_picture.py
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

from mllm_mer.core.labels import load_label_scheme
from mllm_mer.core.types import MediaSettings, PromptSetup, Sample
from mllm_mer.stages.prepare import prepare_one
from mllm_mer.synthetic.frontend import face_clip

OUT = Path(__file__).resolve().parent.parent / "docs" / "face_prompt.png"
BUDGET = 224 * 224


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        clip = face_clip(Path(tmp) / "astronaut.mp4", seconds=3.0, fps=10)
        rows = []
        for visual in ("frames", "faces"):
            setup = PromptSetup(scheme=load_label_scheme("meld"), modalities=("video",),
                                media=MediaSettings(max_frames=4, max_pixels=BUDGET, visual=visual))
            ready = prepare_one(Sample(id="astronaut", video=str(clip)), setup, [])
            rows.append((visual, ready.prompt.media.frames, ready.prompt.media.frame_times))
    width = max(im.width for _, frames, _ in rows for im in frames)
    heights = [max(im.height for im in frames) for _, frames, _ in rows]
    sheet = Image.new("RGB", (4 * (width + 8) + 8, sum(h + 30 for h in heights) + 8), "white")
    draw = ImageDraw.Draw(sheet)
    y = 8
    for (visual, frames, times), height in zip(rows, heights, strict=True):
        for c, (image, t) in enumerate(zip(frames, times, strict=True)):
            x = 8 + c * (width + 8)
            sheet.paste(image, (x, y + 22))
            draw.text((x, y + 4), f"--visual {visual}  t={t:.2f} s  {image.width}x{image.height}", fill="black")
        y += height + 30
    sheet.save(OUT, optimize=True)
    print(OUT)


if __name__ == "__main__":
    main()
