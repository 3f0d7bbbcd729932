"""What the strategies cost on the vLLM engine, same samples: the agent (max 3 steps) vs a single
pass, and the `retrieved` template (k=4 demonstrations) vs zero-shot. Each sample is a 2 s clip with
sound, a transcript and one earlier turn, so that look and listen are open to the agent.

    python -m benchmarks.agent --model runs/small-model [--n 32]

Generate mode with label probabilities for the strategies (label-only answers: a random model's
rationale length would be noise); score mode for the templates. Prefix cache reset before each
timed call; the two are alternated over `repeats` and the best of each is kept.
"""
from __future__ import annotations

import random
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from mllm_mer.config import Section, option
from mllm_mer.core.labels import load_label_scheme
from mllm_mer.core.types import MediaSettings, PromptSetup, Sample, Turn
from mllm_mer.pipeline import predict
from mllm_mer.prompting.demonstrations import DemonstrationIndex
from mllm_mer.stages.resources import Resources
from mllm_mer.strategies.agent import Agent
from mllm_mer.synthetic.media import write_clip

from .backends_for_bench import ModelBenchConfig, script_main
from .bench_inputs import WORDS, bench_samples


@dataclass
class AgentOptions(Section):
    """Samples and repeats."""

    n: int = option(32, "samples")
    repeats: int = option(2, "alternations of the compared runs (best of each kept)")


@dataclass
class AgentBenchConfig(ModelBenchConfig):
    bench: AgentOptions = field(default_factory=AgentOptions)


def clip_samples(n: int, folder: Path) -> list[Sample]:
    """One clip per sample, as in a real split (shared clips would share prompt prefixes and flatter
    whichever prompt puts the clip's evidence first)."""
    rng = random.Random(0)
    return [Sample(id=f"c{i}", transcript=" ".join(rng.choice(WORDS) for _ in range(12)), speaker="A",
                   context=(Turn("B", " ".join(rng.choice(WORDS) for _ in range(8))),),
                   video=str(write_clip(folder / f"clip{i}.mp4", seconds=2.0, fps=10, size=(224, 224),
                                        tone_hz=150 + 7 * i, colour=lambda f, i=i: ((37 * i) % 256, 90, f * 9 % 256))))
            for i in range(n)]


def labelled_pool(n: int = 200) -> list[Sample]:
    labels = load_label_scheme("meld").task("emotion").labels
    rng = random.Random(1)
    return [replace(s, id=f"pool{i}", gold={"emotion": rng.choice(labels)}) for i, s in
            enumerate(bench_samples(n, seed=1, size=8))]


def run(vllm, n: int = 32, repeats: int = 2) -> dict:
    scheme = load_label_scheme("meld")
    media = MediaSettings(max_frames=4, max_pixels=224 * 224)
    with tempfile.TemporaryDirectory() as tmp:
        samples = clip_samples(n, Path(tmp))
        single = PromptSetup(scheme, template="label_only", media=media)
        looker = Agent(max_steps=3, look_frames=2)
        zero = PromptSetup(scheme, template="zero_shot", mode="score", media=media)
        retrieved = replace(zero, template="retrieved", retrieve_k=4)
        resources = Resources(index=DemonstrationIndex(labelled_pool(), "bench-pool"))
        predict(vllm, samples[:2], single, strategy=looker, resources=resources)  # warm-up

        def timed(setup, strategy) -> tuple[float, list]:
            vllm.llm.reset_prefix_cache()
            start = time.perf_counter()
            out = predict(vllm, samples, setup, strategy=strategy, resources=resources)
            return time.perf_counter() - start, out

        best = {"single": float("inf"), "agent": float("inf"), "zero": float("inf"), "retrieved": float("inf")}
        steps: list[int] = []
        runs = (("single", single, None), ("agent", single, looker), ("zero", zero, None),
                ("retrieved", retrieved, None))
        for _ in range(repeats):
            for name, setup, strategy in runs:
                seconds, out = timed(setup, strategy)
                best[name] = min(best[name], seconds)
                if name == "agent":
                    steps = [len(p.extra("agent").get("trace") or []) for p in out]
    return {"n": n, "single_sps": n / best["single"], "agent_sps": n / best["agent"],
            "zero_sps": n / best["zero"], "retrieved_sps": n / best["retrieved"],
            "agent_cost": best["agent"] / best["single"], "retrieved_cost": best["retrieved"] / best["zero"],
            "mean_steps": sum(steps) / max(1, len(steps)),
            "tool_steps": sum(s - 1 for s in steps)}


def report(r: dict) -> str:
    return (f"strategies ({r['n']} clips): single pass {r['single_sps']:.2f}/s, agent (max 3 steps, "
            f"mean {r['mean_steps']:.2f} steps, {r['tool_steps']} tool calls) {r['agent_sps']:.2f}/s: "
            f"{r['agent_cost']:.2f}x the time; zero-shot scoring {r['zero_sps']:.2f}/s, retrieved k=4 "
            f"{r['retrieved_sps']:.2f}/s: {r['retrieved_cost']:.2f}x the time")


def main(argv: list[str] | None = None) -> dict:
    return script_main(__doc__, run, report, AgentBenchConfig, needs_hf=False, argv=argv)


if __name__ == "__main__":
    main()
