"""Every strategy keeps the engine full: the agent, self-consistency and reasoning first, each `evaluate` run
against the same engine requests replayed raw in one call.

    python -m benchmarks.strategies_full --model runs/bench-small [--n 32]

Per strategy, on the first N MELD test rows (generate mode, zero-shot, label probabilities on; text only,
or for the agent the first N/2 rows each with a generated 2 s clip it can look at, at most 4 frames):
`evaluate` with continuous submission records every request it gives the engine (the prompt and its
sampling parameters, label scorings included); that recording is replayed raw in one `LLM.generate`. Ratio =
the raw replay's time / evaluate's inference time (its own report's figure), prefix cache reset before each;
batched (lockstep) submission is timed beside it. The raw replay sends a sample's later steps before its
earlier ones are read, which no real run can: it is the engine's ceiling for that work.

The agent is also timed on a mix with one long sample (its transcript about 40 times the others'),
continuous against lockstep: in lockstep every step waits for the slowest sample of the batch.
"""
from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from mllm_mer.config import EvaluateConfig, Section, build, option
from mllm_mer.evaluation.runner import run_evaluation

from .backends_for_bench import ModelBenchConfig, script_main
from .dialogue import DEFAULT_MELD

STRATEGIES = {
    "agent": {"strategy": "agent", "max_steps": 3},
    "self-consistency": {"samples": 5, "temperature": 0.7},
    "reasoning": {"reasoning": "before", "max_reasoning_tokens": 64},
}


@dataclass
class StrategiesFullOptions(Section):
    """Rows and repeats."""

    n: int = option(32, "MELD test rows (text only)")
    meld_dir: str = option(DEFAULT_MELD, "folder of MELD's CSVs")
    repeats: int = option(1, "alternations (best of each kept)")


@dataclass
class StrategiesFullConfig(ModelBenchConfig):
    bench: StrategiesFullOptions = field(default_factory=StrategiesFullOptions)


def _manifest(root: Path, meld_dir: str, n: int, clips: bool = False, long_one: bool = False) -> Path:
    """The first n MELD test rows as a manifest; `clips`: each with a generated 2 s clip (so the agent has
    frames to look at); `long_one`: the middle row's transcript 40 times over."""
    import csv

    from mllm_mer.synthetic.media import write_clip

    with open(Path(meld_dir) / "test_sent_emo.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))[:n]
    lines = []
    for i, row in enumerate(rows):
        text = row["Utterance"] if not (long_one and i == n // 2) else " ".join([row["Utterance"]] * 40)
        line = {"id": f"r{i}", "text": text, "label": row["Emotion"].lower()}
        if clips:
            line["video"] = write_clip(root / f"clip{i}.mp4", seconds=2.0, fps=8, size=(320, 240), audio=False,
                                       texture=True, colour=lambda k, i=i: (40 * i % 256, 120, 200)).name
        lines.append(json.dumps(line))
    path = root / f"rows{'-clips' * clips}{'-long' * long_one}.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _evaluate(vllm, manifest: Path, out: Path, submission: str, options: dict) -> float:
    cfg = build(EvaluateConfig, dataset="manifest", data_dir=str(manifest), out=str(out),
                model=vllm.config.model.model, backend="vllm", max_new_tokens=vllm.config.model.max_new_tokens,
                template="zero_shot", submission=submission, batch_size=16, probabilities=True, max_frames=4,
                **options)
    vllm.llm.reset_prefix_cache()
    seconds = run_evaluation(cfg, backend=vllm, progress=False)["timing"]["inference_s"]
    shutil.rmtree(out)
    return seconds


def _recorded(vllm, run) -> list:
    """Every (engine request, sampling parameters) that `run()` gives the engine."""
    recorded, add = [], vllm.loop.add

    def record(request, params, lora=None, watch=False):
        recorded.append((request, params.clone()))
        return add(request, params, lora, watch=watch)

    vllm.loop.add = record
    try:
        run()
    finally:
        del vllm.loop.add
    return recorded


def _compare(vllm, manifest: Path, options: dict, repeats: int, tmp: Path) -> dict:
    best = {"continuous": float("inf"), "batched": float("inf"), "raw": float("inf")}
    requests = _recorded(vllm, lambda: _evaluate(vllm, manifest, tmp / "record", "continuous", options))
    for r in range(repeats):
        for name in ("continuous", "raw", "batched"):
            if name == "raw":
                vllm.llm.reset_prefix_cache()
                start = time.perf_counter()
                vllm.llm.generate([q for q, _ in requests], [p.clone() for _, p in requests], use_tqdm=False)
                best["raw"] = min(best["raw"], time.perf_counter() - start)
            else:
                best[name] = min(best[name], _evaluate(vllm, manifest, tmp / f"{name}{r}", name, options))
    return {**{f"{k}_s": v for k, v in best.items()}, "requests": len(requests),
            "ratio": best["raw"] / best["continuous"], "batched_ratio": best["raw"] / best["batched"],
            "vs_lockstep": best["batched"] / best["continuous"]}


def run(vllm, n: int = 32, meld_dir: str = DEFAULT_MELD, repeats: int = 1) -> dict:
    found: dict = {"n": n}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rows = _manifest(root, meld_dir, n)
        found["agent"] = _compare(vllm, _manifest(root, meld_dir, n // 2, clips=True), STRATEGIES["agent"],
                                  repeats, root)
        for name in ("self-consistency", "reasoning"):
            found[name] = _compare(vllm, rows, {**STRATEGIES[name], "modalities": ["text"]}, repeats, root)
        found["agent_one_long"] = _compare(vllm, _manifest(root, meld_dir, n // 2, clips=True, long_one=True),
                                           STRATEGIES["agent"], repeats, root)
    return found


def report(r: dict) -> str:
    what = {"agent": (r["n"] // 2, "with 2 s clips, agent, at most 3 steps"),
            "self-consistency": (r["n"], "text, self-consistency, 5 draws"),
            "reasoning": (r["n"], "text, --reasoning before, 64-token bound"),
            "agent_one_long": (r["n"] // 2, "with 2 s clips, agent, one transcript 40 times longer")}
    return "\n- ".join(
        f"engine kept full ({n} MELD test rows {label}): the same {s['requests']} engine requests replayed raw "
        f"{s['raw_s']:.2f} s, evaluate continuous {s['continuous_s']:.2f} s ({s['ratio']:.2f}x the raw replay's "
        f"samples/s), batched {s['batched_s']:.2f} s ({s['batched_ratio']:.2f}x); continuous {s['vs_lockstep']:.2f}x "
        f"lockstep's samples/s" for name, (n, label) in what.items() if (s := r.get(name)))


def main(argv: list[str] | None = None) -> dict:
    return script_main(__doc__, run, report, StrategiesFullConfig, needs_hf=False, argv=argv)


if __name__ == "__main__":
    main()
