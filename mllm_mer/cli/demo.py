"""`mllm-mer demo`: what the main job needs on a fresh machine, made offline in seconds.

A random-weight tiny checkpoint of the real architecture (built once) and a short clip with
sound. Its answer shows that the path runs, not what a trained model says: the output says so.
"""
from __future__ import annotations

from pathlib import Path

from mllm_mer.core.paths import user_cache

DEMO_TRANSCRIPT = "I can't believe you did that!"
TINY_NOTE = ("demo: a random-weight tiny model answers, so the label is arbitrary; the same command with "
             "--model DIR (e.g. a downloaded Qwen2.5-VL-7B-Instruct) gives a real one")


def demo_inputs(folder: str | None) -> tuple[Path, Path]:
    """(tiny checkpoint, sample clip) under `folder` (default: the user cache), each built only if missing."""
    from mllm_mer.synthetic.checkpoints import build_checkpoint
    from mllm_mer.synthetic.media import write_clip

    root = Path(folder).expanduser() if folder else user_cache() / "demo"
    root.mkdir(parents=True, exist_ok=True)
    model = root / "tiny-qwen2-vl"
    if not (model / "config.json").is_file():
        build_checkpoint(model, arch="qwen2_vl", size="tiny", seed=0)
    clip = root / "sample.mp4"
    if not clip.is_file():  # 2 s of a moving colour field with a 220 Hz voice-like tone
        write_clip(clip, seconds=2.0, fps=10, size=(160, 120), texture=True)
    return model, clip
