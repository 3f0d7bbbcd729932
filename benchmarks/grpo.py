"""GRPO step time against an SFT step on the same prompts, and where a GRPO step's time goes.

Each run trains on the synthetic colour x wording task from a fresh LoRA: 2 prompts per step, the GRPO
step answering each `group` times (answers of `--tokens` tokens; a random model writes to the limit, so
every step samples the same amount), the SFT step taking the same 2 prompts with their gold answers.
Step times come from a callback around each optimiser step (the first step, warm-up, left out); the
sampling share from the trainer's own `generation_time` log.

    python -m benchmarks.grpo --model TINY [--small SMALL] [--steps 6] [--tokens 16]
"""
from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from mllm_mer.config import Section, option

from .common import bench_main

GROUPS = (4, 8)


@dataclass
class GrpoBenchOptions(Section):
    model: str | None = option(None, "the tiny checkpoint (mllm-mer make-tiny DIR)")
    small: str | None = option(None, "also the small one (mllm-mer make-tiny DIR --size small)")
    steps: int = option(6, "optimiser steps per run (the first is not counted)", low=2)
    tokens: int = option(16, "answer tokens per GRPO answer", low=1)


@dataclass
class GrpoBenchConfig:
    bench: GrpoBenchOptions = field(default_factory=GrpoBenchOptions)


def _timed_steps():
    from transformers import TrainerCallback

    class StepTimes(TrainerCallback):
        def __init__(self):
            self.times: list[float] = []

        def on_step_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.times.append(time.perf_counter() - self.started)

    return StepTimes()


def _recipe(model: str, task: Path, out: Path, *extra: str):
    from mllm_mer.config import TrainConfig

    return TrainConfig.from_yaml("finetune/configs/tiny_lora.yaml", [
        f"model={model}", f"output_dir={out}", f"data_dir={task / 'manifest.jsonl'}", f"labels={task / 'labels.yaml'}",
        f"dataset_options={{labels: {task / 'labels.yaml'}, task: emotion}}", "dev_split=null", "eval_steps=null",
        "report_to=[]", "logging_steps=1", "save_steps=1000", *extra])


def measure(model: str, task: Path, work: Path, steps: int, tokens: int) -> dict:
    from mllm_mer.training import grpo, sft

    timing = _timed_steps()
    sft.train(_recipe(model, task, work / "sft", f"max_steps={steps}", "batch_size=2"), callbacks=[timing])
    result = {"sft_s": statistics.mean(timing.times[1:])}
    for group in GROUPS:
        timing = _timed_steps()
        cfg = _recipe(model, task, work / f"grpo{group}", "method=grpo", f"max_steps={steps}",
                      f"batch_size={2 * group}", f"num_generations={group}", f"max_completion_length={tokens}")
        grpo.train(cfg, callbacks=[timing])
        history = [h for h in _history(work / f"grpo{group}") if "generation_time" in h][1:]
        result[f"grpo{group}_s"] = statistics.mean(timing.times[1:])
        result[f"grpo{group}_sampling"] = (sum(h["generation_time"] for h in history)
                                           / sum(h["step_time"] for h in history))
    return result


def _history(run: Path) -> list[dict]:
    import json

    last = max((run / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    return json.loads((last / "trainer_state.json").read_text())["log_history"]


def run(model: str | None = None, small: str | None = None, steps: int = 6, tokens: int = 16) -> dict:
    from mllm_mer.synthetic.tasks import make_task

    if not model:
        raise ValueError("--model is required (e.g. mllm-mer make-tiny runs/tiny)")
    results = {"steps": steps, "tokens": tokens}
    with tempfile.TemporaryDirectory() as tmp:
        task = make_task(Path(tmp) / "task").parent
        for name, path in (("tiny", model), ("small", small)):
            if path:
                results[name] = measure(path, task, Path(tmp) / name, steps, tokens)
    return results


def report(r: dict) -> str:
    lines = [f"GRPO vs SFT step, 2 prompts per step, answers of {r['tokens']} tokens, mean of steps 2-{r['steps']}",
             "| model | SFT step s | " + " | ".join(f"GRPO G={g} step s (x SFT) | sampling share" for g in GROUPS)
             + " |", "|---|---|" + "---|---|" * len(GROUPS)]
    for name in ("tiny", "small"):
        if name in r:
            m = r[name]
            cells = [f"{m[f'grpo{g}_s']:.2f} ({m[f'grpo{g}_s'] / m['sft_s']:.1f}x) | {m[f'grpo{g}_sampling']:.0%}"
                     for g in GROUPS]
            lines.append(f"| {name} | {m['sft_s']:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    return bench_main(GrpoBenchConfig, __doc__, run, report, argv)


if __name__ == "__main__":
    main()
