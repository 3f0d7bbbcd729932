"""Ctrl-C in one line: what the interrupted verb has saved, and what rerunning it does with that."""
from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["interrupted_line"]


def interrupted_line(argv: list[str], cfg: Any) -> str:
    """`mllm-mer VERB: interrupted`, and for a verb that writes as it goes, what is saved and how to go on."""
    name = next((a for a in argv if not a.startswith("-")), "")
    saved = SAVED.get(name)
    tail = saved(cfg) if saved and cfg is not None else None
    return f"mllm-mer {name}: interrupted" + (f"; {tail}" if tail else "")


def _rows(cfg: Any) -> str | None:
    """A run directory (evaluate, ablate, distill's teacher pass): its saved rows; a rerun answers the rest."""
    out = getattr(getattr(cfg, "run", None), "out", None)
    if not out:
        return None
    saved = sum(_complete_lines(p) for p in Path(out).rglob("predictions.jsonl")) if Path(out).is_dir() else 0
    return f"{saved} row{'s' * (saved != 1)} saved in {out}; rerun the same command to resume"


def _complete_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for line in f if line.endswith(b"\n") and line.strip())


def _timeline(cfg: Any) -> str | None:
    """`dialogue` writes its timeline once every utterance is answered: nothing of this run is kept."""
    return ("nothing saved: the timeline is written once every utterance is answered; rerunning the same "
            "command starts over")


def last_checkpoint(folder: Path) -> tuple[Path, int] | None:
    """The newest complete checkpoint (transformers writes trainer_state.json last) and its step."""
    found = [(int(m.group(1)), p) for p in (folder.iterdir() if folder.is_dir() else ())
             if (m := re.fullmatch(r"checkpoint-(\d+)", p.name)) and (p / "trainer_state.json").is_file()]
    if not found:
        return None
    step, path = max(found)
    return path, step


def _checkpoints(cfg: Any) -> str | None:
    """`finetune` checkpoints into OUTPUT_DIR/checkpoints; a rerun goes on from one only when asked to."""
    optim = getattr(cfg, "optim", None)
    out = getattr(optim, "output_dir", None)
    if not out:
        return None
    found = last_checkpoint(Path(out) / "checkpoints")
    if found is None:
        return f"no checkpoint saved yet in {out}; rerunning the same command starts over"
    path, step = found
    latest = max((int(m.group(1)) for p in path.parent.iterdir()
                  if (m := re.fullmatch(r"checkpoint-(\d+)", p.name))), default=step)
    # `true` resumes from the highest-numbered folder, which must then be the complete one
    if str(optim.resume_from_checkpoint).lower() == "true" and latest == step:
        return f"last checkpoint {path} (step {step}); rerun the same command to resume from it"
    return (f"last checkpoint {path} (step {step}); add --resume-from-checkpoint {path} to resume from it "
            "(the same command alone starts over)")


# verb -> what it has saved when interrupted (a verb not named here writes nothing as it goes)
SAVED: dict[str, Callable[[Any], str | None]] = {
    "evaluate": _rows, "ablate": _rows, "distill": _rows, "dialogue": _timeline, "finetune": _checkpoints,
}
