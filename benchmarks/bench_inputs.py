"""The samples every model benchmark uses: one 224x224 frame, a transcript and a short context each."""
from __future__ import annotations

import random

from PIL import Image

from mllm_mer.core.types import Sample, Turn

WORDS = ("you", "did", "what", "never", "again", "fine", "okay", "wow", "really", "no", "yes", "please", "stop", "now",
         "great", "terrible", "honestly")


def bench_samples(n: int, seed: int = 0, size: int = 224) -> list[Sample]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        image = Image.new("RGB", (size, size), tuple(rng.randint(0, 255) for _ in range(3)))
        out.append(Sample(id=f"b{i}", transcript=" ".join(rng.choice(WORDS) for _ in range(12)),
                          context=(Turn("A", " ".join(rng.choice(WORDS) for _ in range(8))),),
                          image=image))
    return out
