"""Test inputs made on the spot: random samples with stills or frames."""
from __future__ import annotations

import random

from PIL import Image

from mllm_mer.types import Sample, Turn

WORDS = ["you", "did", "what", "never", "again", "fine", "okay", "wow", "really", "no", "yes", "please", "stop", "now",
         "great", "terrible"]


def random_samples(n: int, seed: int = 0) -> list[Sample]:
    """Random text and context; even samples carry one still, odd ones 2 or 4 frames of a clip."""
    rng = random.Random(seed)
    samples = []
    for i in range(n):
        size = (rng.randint(40, 120), rng.randint(40, 120))
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 12)))
        context = tuple(Turn(rng.choice(["A", "B"]), rng.choice(WORDS)) for _ in range(rng.randint(0, 3)))
        images = [Image.new("RGB", size, tuple(rng.randint(0, 255) for _ in range(3)))
                  for _ in range(rng.choice([2, 4]) if i % 2 else 1)]
        samples.append(Sample(id=f"r{i}", transcript=text, context=context,
                              frames=tuple(images) if i % 2 else (), image=None if i % 2 else images[0]))
    return samples
