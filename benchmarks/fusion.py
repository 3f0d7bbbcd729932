"""What fusion costs on the vLLM engine: 3 single-modality experts + the joint prompt vs single-pass
scoring of the joint prompt alone, same clips (2 s with sound, a transcript and one earlier turn).

    python -m benchmarks.fusion --model runs/small-model [--n 32]

Media is decoded once in both (and cached across the runs, so only model time differs); the experts
share the system prompt through the prefix cache. Prefix cache reset before each timed call; the two
are alternated over `repeats` and the best of each is kept.
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from mllm_mer.config import Section, option
from mllm_mer.core.labels import load_label_scheme
from mllm_mer.core.types import MediaSettings, PromptSetup
from mllm_mer.pipeline import predict
from mllm_mer.strategies.fusion import Fusion

from .agent import clip_samples
from .backends_for_bench import ModelBenchConfig, script_main


@dataclass
class FusionOptions(Section):
    """Samples and repeats."""

    n: int = option(32, "samples")
    repeats: int = option(2, "alternations of the compared runs (best of each kept)")


@dataclass
class FusionBenchConfig(ModelBenchConfig):
    bench: FusionOptions = field(default_factory=FusionOptions)


def run(vllm, n: int = 32, repeats: int = 2) -> dict:
    single = PromptSetup(load_label_scheme("meld"), template="zero_shot", mode="score",
                         media=MediaSettings(max_frames=4, max_pixels=224 * 224))
    fusion = Fusion(fuser="entropy")
    with tempfile.TemporaryDirectory() as tmp:
        samples = clip_samples(n, Path(tmp))
        predict(vllm, samples[:2], single, strategy=fusion)  # warm-up (and the media cache)
        best = {"single": float("inf"), "fusion": float("inf")}
        experts = 0
        for _ in range(repeats):
            for name, strategy in (("single", None), ("fusion", fusion)):
                vllm.llm.reset_prefix_cache()
                start = time.perf_counter()
                out = predict(vllm, samples, single, strategy=strategy)
                best[name] = min(best[name], time.perf_counter() - start)
                if name == "fusion":
                    experts = sum(len(p.extra("fusion").get("experts") or {}) for p in out) / len(out)
    return {"n": n, "single_sps": n / best["single"], "fusion_sps": n / best["fusion"],
            "cost": best["fusion"] / best["single"], "experts": experts}


def report(r: dict) -> str:
    return (f"fusion ({r['n']} clips, {r['experts']:.1f} experts each): single-pass scoring {r['single_sps']:.2f}/s, "
            f"fusion {r['fusion_sps']:.2f}/s: {r['cost']:.2f}x the time")


def main(argv: list[str] | None = None) -> dict:
    return script_main(__doc__, run, report, FusionBenchConfig, needs_hf=False, argv=argv)


if __name__ == "__main__":
    main()
