"""Batch prompting end to end vs the raw engine: does `evaluate` keep the vLLM engine full?

    python -m benchmarks.engine_full --model runs/bench-small [--n 64] [--clips 16]

Text: the first N MELD test rows (text only, zero-shot, generate mode). `evaluate` on the
vLLM engine backend with continuous submission (and batched, for reference) against one raw
`LLM.generate` over the same rendered prompts with the same sampling parameters. Evaluate's
samples/s is the one its report gives (its loop: media, prompts, engine, parsing, fsynced
saving; not the split loading or the plots). Alternated, prefix cache reset before each,
best of `repeats`.

Clips: N generated clips (8 frames each, textured 1280x720, x264's default 250-frame GOP, so that
decoding costs what it costs on real footage): evaluate end to end against the
media stage alone (every clip decoded, one after another) and the raw engine over the
prepared prompts. Media time hidden behind inference = (media + raw - end to end) / media.
"""
from __future__ import annotations

import functools
import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from mllm_mer.config import EvaluateConfig, Section, build, option
from mllm_mer.datasets import load_configured
from mllm_mer.evaluation.runner import run_evaluation
from mllm_mer.pipeline import prepare
from mllm_mer.pipeline.build import prompt_setup

from .backends_for_bench import ModelBenchConfig, script_main
from .dialogue import DEFAULT_MELD


@dataclass
class EngineFullOptions(Section):
    """Rows, clips and repeats."""

    n: int = option(64, "MELD test rows (text only)")
    clips: int = option(16, "generated clips for the media run (0: skip it)")
    meld_dir: str = option(DEFAULT_MELD, "folder of MELD's CSVs")
    repeats: int = option(2, "alternations (best of each kept)")


@dataclass
class EngineFullConfig(ModelBenchConfig):
    bench: EngineFullOptions = field(default_factory=EngineFullOptions)


def _config(vllm, dataset: str, data_dir: str, out: Path, **extra) -> EvaluateConfig:
    # No media cache: every run decodes its clips, as a first run does.
    return build(EvaluateConfig, dataset=dataset, data_dir=data_dir, out=str(out), model=vllm.config.model.model,
                 backend="vllm", max_new_tokens=vllm.config.model.max_new_tokens, template="zero_shot",
                 media_cache_gb=0, **extra)


def _prompts(cfg: EvaluateConfig) -> list:
    split = load_configured(cfg.data, cfg.run.split, cfg.prompt.labels)
    samples = split.samples[: cfg.run.limit] if cfg.run.limit else split.samples
    setup = prompt_setup(cfg, default_labels=split.labels)
    return samples, setup


def _score_requests(vllm, prompts: list) -> tuple[list, list]:
    """Every engine request of label scoring over these prompts (each task's reading walks, after the labels
    chosen for the tasks before it), to replay in one raw call."""
    from mllm_mer.stages.scoring import score_labels, task_candidates

    chosen = [{t: tp.label for t, tp in tasks.items()} for tasks in score_labels(vllm, prompts)]
    requests, params = [], []
    for prompt, labels in zip(prompts, chosen, strict=True):
        for k in range(len(prompt.label_sets)):
            _, walks = vllm._score_walks(prompt, task_candidates(prompt, k, labels))
            requests += [request for _, request, _ in walks]
            params += [p for _, _, p in walks]
    return requests, params


def _scored_prompts(prepared: list, setup, strategy: str) -> list:
    """The prompts a strategy scores: each sample's own, or every expert of fusion."""
    if strategy != "fusion":
        return [p.prompt for p in prepared]
    from mllm_mer.strategies import RunContext
    from mllm_mer.strategies.fusion import Fusion

    run = RunContext(setup)
    return [prompt for p in prepared for _, prompt in Fusion().scorings(p, run)]


def _compare(vllm, make_cfg, repeats: int, media: bool, mode: str = "generate", strategy: str = "single") -> dict:
    """Best times of: evaluate continuous, evaluate batched, the same engine requests replayed raw in one
    `LLM.generate` (and the media stage)."""
    samples, setup = _prompts(make_cfg(Path("unused")))
    start = time.perf_counter()
    prepared = prepare(samples, setup)
    ready = [p.prompt for p in prepared]
    media_s = time.perf_counter() - start
    if mode == "score":
        requests, params = _score_requests(vllm, _scored_prompts(prepared, setup, strategy))
    else:
        answers = [vllm._answer(p) for p in ready]
        requests, params = [r for r, _, _ in answers], [p for _, p, _ in answers]
    vllm.llm.generate(requests[:2], params[:2], use_tqdm=False)  # warm-up
    best = {"continuous": float("inf"), "batched": float("inf"), "raw": float("inf"),
            "continuous_wall": float("inf")}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats):
            for name in ("continuous", "raw", "batched"):
                vllm.llm.reset_prefix_cache()
                if name == "raw":
                    start = time.perf_counter()
                    vllm.llm.generate(requests, [p.clone() for p in params], use_tqdm=False)
                    best["raw"] = min(best["raw"], time.perf_counter() - start)
                    continue
                out = Path(tmp) / f"{name}{r}"
                start = time.perf_counter()
                metrics = run_evaluation(make_cfg(out, submission=name, mode=mode, strategy=strategy), backend=vllm,
                                         progress=False)
                wall = time.perf_counter() - start
                best[name] = min(best[name], metrics["timing"]["inference_s"])
                if name == "continuous":
                    best["continuous_wall"] = min(best["continuous_wall"], wall)
                shutil.rmtree(out)
    n = len(samples)
    found = {"n": n, "media_s": media_s, **{f"{k}_s": v for k, v in best.items()},
             "continuous_sps": n / best["continuous"], "batched_sps": n / best["batched"], "raw_sps": n / best["raw"],
             "ratio": best["raw"] / best["continuous"], "batched_ratio": best["raw"] / best["batched"]}
    if media:
        slowest = max(media_s, best["raw"])
        found["vs_max"] = best["continuous"] / slowest
        found["hidden"] = (media_s + best["raw"] - best["continuous"]) / media_s
    return found


def _clips(root: Path, n: int) -> Path:
    from mllm_mer.synthetic.media import write_clip

    rows = []
    for i in range(n):
        clip = write_clip(root / f"clip{i}.mp4", seconds=6.0, fps=30, size=(1280, 720), texture=True, audio=False,
                          gop=250, colour=lambda k, i=i: (40 * i % 256, 120, 200))
        rows.append({"id": f"c{i}", "video": clip.name, "text": f"clip number {i}", "label": "neutral"})
    manifest = root / "clips.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def run(vllm, n: int = 64, clips: int = 16, meld_dir: str = DEFAULT_MELD, repeats: int = 2) -> dict:
    meld = functools.partial(_config, vllm, "meld", meld_dir, split="test", limit=n, modalities=["text"])
    found = {"text": _compare(vllm, meld, repeats, media=False),
             "score": _compare(vllm, meld, repeats, media=False, mode="score")}
    if clips:
        with tempfile.TemporaryDirectory() as tmp:
            made = functools.partial(_config, vllm, "manifest", str(_clips(Path(tmp), clips)), max_frames=8)
            found["clips"] = _compare(vllm, made, repeats, media=True)
            found["fusion"] = _compare(vllm, made, repeats, media=True, mode="score", strategy="fusion")
    return found


def _replay_line(s: dict, what: str) -> str:
    """A scoring run against the same requests replayed raw in one `LLM.generate` (prompts prepared beforehand)."""
    return (f"engine kept full ({s['n']} {what}): evaluate continuous {s['continuous_sps']:.2f}/s, batched "
            f"{s['batched_sps']:.2f}/s, the same scoring requests replayed raw {s['raw_sps']:.2f}/s: continuous "
            f"{s['ratio']:.2f}x, batched {s['batched_ratio']:.2f}x the raw replay's samples/s")


def report(r: dict) -> str:
    t = r["text"]
    lines = [f"engine kept full ({t['n']} MELD test rows, text, generate mode): evaluate continuous "
             f"{t['continuous_sps']:.2f}/s, batched {t['batched_sps']:.2f}/s, raw LLM.generate {t['raw_sps']:.2f}/s: "
             f"continuous {t['ratio']:.2f}x, batched {t['batched_ratio']:.2f}x the raw engine's samples/s"]
    replayed = {"score": "MELD test rows, text, score mode: emotion then sentiment",
                "fusion": "generated clips, 8 frames, fusion: experts text, video and the joint prompt"}
    lines += [_replay_line(r[name], what) for name, what in replayed.items() if name in r]
    if "clips" in r:
        c = r["clips"]
        lines.append(f"engine kept full ({c['n']} generated clips, 8 frames): media stage alone {c['media_s']:.2f} s, "
                     f"raw engine {c['raw_s']:.2f} s, evaluate continuous {c['continuous_s']:.2f} s "
                     f"({c['vs_max']:.2f}x the larger of the two; {100 * c['hidden']:.0f}% of the media time hidden "
                     f"behind inference), batched {c['batched_s']:.2f} s")
    return "\n- ".join(lines)


def main(argv: list[str] | None = None) -> dict:
    return script_main(__doc__, run, report, EngineFullConfig, needs_hf=False, argv=argv)


if __name__ == "__main__":
    main()
