"""`mllm-mer demo`: what the main job needs on a fresh machine, made offline in seconds.

A random-weight tiny checkpoint of the real architecture (built once) and a short clip with
sound. Its answer shows that the path runs, not what a trained model says: the output says so.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from mllm_mer.core.paths import user_cache

DEMO_TRANSCRIPT = "I can't believe you did that!"
TINY_NOTE = ("demo: a random-weight tiny model answers, so the label is arbitrary; the same command with "
             "--model DIR (e.g. a downloaded Qwen2.5-VL-7B-Instruct) gives a real one")
SPOKEN = f"2 s of a moving colour field; its sound track speaks the transcript ({DEMO_TRANSCRIPT!r}, espeak-ng)"
TONE = ("2 s of a moving colour field; its sound track is a steady 220 Hz tone, no speech (install espeak-ng "
        "and delete the clip for a spoken one)")


def _speech():
    """The transcript spoken by espeak-ng where it is installed (scripts/install.sh installs it), else None."""
    if shutil.which("espeak-ng") is None:
        return None
    from mllm_mer.synthetic.frontend import speak

    return speak(DEMO_TRANSCRIPT)


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
    # The note beside the clip says what it holds; a clip without one predates the spoken track: rebuilt.
    note = clip.with_suffix(".txt")
    if not (clip.is_file() and note.is_file()):
        speech = _speech()
        write_clip(clip, seconds=2.0, fps=10, size=(160, 120), texture=True, speech=speech)
        note.write_text((SPOKEN if speech is not None else TONE) + "\n")
    return model, clip


def clip_contents(clip: Path) -> str:
    """What the demo clip holds, as written when it was built."""
    note = clip.with_suffix(".txt")
    return note.read_text().strip() if note.is_file() else "a clip with sound"
