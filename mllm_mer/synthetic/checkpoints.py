"""`mllm-mer make-tiny --arch A`: the builder of each architecture's random-weight checkpoint."""
from __future__ import annotations

from pathlib import Path

from mllm_mer.synthetic.tiny import SIZES, make_tiny
from mllm_mer.synthetic.tiny_omni import make_tiny_omni


def build_checkpoint(out_dir: str | Path, arch: str = "qwen2_vl", size: str = "tiny", seed: int = 0,
                     thinking: bool = False) -> Path:
    if arch == "qwen2_5_omni":
        if thinking:
            raise ValueError("--thinking builds a qwen2_vl or qwen2_5_vl checkpoint (the Omni thinker has no think "
                             "block in its template)")
        if size not in SIZES:
            raise ValueError(f"size must be one of {tuple(SIZES)}, not {size!r}")
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        return make_tiny_omni(out, SIZES[size], size, seed)
    return make_tiny(out_dir, arch=arch, size=size, seed=seed, thinking=thinking)
