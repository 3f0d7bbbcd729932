"""What hearing costs: the Omni path (the waveform + frames) against the VL path (frames + transcript +
cue text) on the same clips, and decoding a long recording's audio once per file against once per window.

    python -m benchmarks.omni --omni-model runs/tiny-omni --vl-model runs/tiny-model [--n 16]

Both paths score the same clips with the vLLM engine (score mode, one engine at a time, the prefix
cache reset before each timed pass); prompt tokens are counted by each model's own processor. The audio
part times `load_audio` over `windows` utterance windows of a `minutes`-long recording, alone and
inside `shared_tracks` (one open file, each window seeked to).
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from mllm_mer.config import (
    BackendConfig,
    MediaConfig,
    ModelConfig,
    PromptConfig,
    PromptedConfig,
    Section,
    build,
    option,
)
from mllm_mer.core.types import Sample
from mllm_mer.media.audio import load_audio, shared_tracks
from mllm_mer.pipeline import predict, prepare
from mllm_mer.pipeline.build import open_backend, prompt_setup
from mllm_mer.synthetic.media import write_clip, write_wav

from .common import bench_main


@dataclass
class OmniOptions(Section):
    """The two checkpoints, the clips and the long recording."""

    omni_model: str | None = option(None, "an Omni checkpoint (mllm-mer make-tiny DIR --arch qwen2_5_omni)")
    vl_model: str | None = option(None, "a Qwen2-VL checkpoint of similar size (mllm-mer make-tiny DIR)")
    n: int = option(16, "clips (2 s, 720p, with sound)")
    minutes: float = option(10.0, "length of the long recording for the audio-decoding comparison")
    windows: int = option(150, "utterance windows over it")


@dataclass
class OmniBenchConfig:
    bench: OmniOptions = field(default_factory=OmniOptions)


def _clips(n: int, folder: Path) -> list[Sample]:
    return [Sample(id=f"c{i}", video=str(write_clip(folder / f"c{i}.mp4", seconds=2.0, fps=25, size=(1280, 720),
                                                      tone_hz=180 + 20 * i)), transcript="I can't believe it.")
            for i in range(n)]


def _path(model: str, samples: list[Sample]) -> dict:
    from transformers import AutoProcessor

    from mllm_mer.backends.base import render
    from mllm_mer.backends.hf_loading import processor_inputs

    setup = prompt_setup(PromptedConfig(ModelConfig(model=model), PromptConfig(labels="meld", template="label_only",
                                                                               mode="score"),
                                        MediaConfig(max_frames=8, media_cache_gb=0)))
    processor = AutoProcessor.from_pretrained(model)
    prompts = [p.prompt for p in prepare(samples, setup)]
    tokens = [int(processor_inputs(processor, [p], [render(processor, p)])["input_ids"].shape[1]) for p in prompts]
    with open_backend(build(BackendConfig, model=model, backend="vllm", dtype="float32", enforce_eager=True,
                            max_model_len=8192, kv_cache_gb=2)) as engine:
        predict(engine, samples[:2], setup)  # warm-up
        engine.llm.reset_prefix_cache()
        start = time.perf_counter()
        predict(engine, samples, setup)
        seconds = time.perf_counter() - start
    return {"tokens": sum(tokens) / len(tokens), "sps": len(samples) / seconds, "heard": setup.hear_seconds > 0}


def _audio_decoding(minutes: float, windows: int, folder: Path) -> dict:
    recording = str(write_wav(folder / "long.wav", seconds=minutes * 60, tone_hz=200))
    step = minutes * 60 / windows
    spans = [(i * step, i * step + 0.8 * step) for i in range(windows)]
    start = time.perf_counter()
    for a, b in spans:
        load_audio(recording, a, b)
    alone = time.perf_counter() - start
    start = time.perf_counter()
    with shared_tracks([recording]):
        for a, b in spans:
            load_audio(recording, a, b)
    shared = time.perf_counter() - start
    return {"per_window_s": alone, "once_per_file_s": shared}


def run(omni_model: str | None, vl_model: str | None, n: int = 16, minutes: float = 10.0, windows: int = 150
        ) -> dict:
    if not (omni_model and vl_model):
        raise SystemExit("--omni-model and --vl-model are required")
    with tempfile.TemporaryDirectory() as tmp:
        samples = _clips(n, Path(tmp))
        omni, vl = _path(omni_model, samples), _path(vl_model, samples)
        audio = _audio_decoding(minutes, windows, Path(tmp))
    return {"n": n, "omni": omni, "vl": vl, **audio, "minutes": minutes, "windows": windows}


def report(r: dict) -> str:
    o, v = r["omni"], r["vl"]
    return (f"omni path (audio + 8 frames) vs vl path (8 frames + transcript + cue text), {r['n']} clips: "
            f"prompt tokens {o['tokens']:.0f} vs {v['tokens']:.0f}, samples/s {o['sps']:.2f} vs {v['sps']:.2f} "
            f"({o['sps'] / v['sps']:.2f}x)\n"
            f"audio of a {r['minutes']:g}-minute recording, {r['windows']} windows: decoded per window "
            f"{r['per_window_s']:.2f} s, once per file {r['once_per_file_s']:.2f} s "
            f"({r['per_window_s'] / r['once_per_file_s']:.1f}x)")


def main(argv: list[str] | None = None) -> dict:
    return bench_main(OmniBenchConfig, __doc__, run, report, argv)


if __name__ == "__main__":
    main()
