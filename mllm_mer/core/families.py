"""Model registry: every model-family quirk lives here and nowhere else.

A family says how its processor takes video (plain frames, or frames plus sampling
metadata), the default frame and pixel budgets, which modules LoRA may target so
that vLLM can serve the adapter (language model only), and how to build a tiny
random checkpoint of it for offline tests.
"""
from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mllm_mer.core.types import Reasoning, ServiceError

DEFAULT_MODEL = "Qwen/Qwen2.5-VL-7B-Instruct"

# Language-model projections only: vLLM applies LoRA to the language model, not the vision tower.
_LM_PROJECTIONS = r"(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


@dataclass(frozen=True)
class ModelFamily:
    name: str
    model_types: tuple[str, ...]  # config.json `model_type` values of this family
    id_pattern: str  # regex on a hub id, for ids whose config cannot be read offline
    video_with_metadata: bool  # vLLM wants (frames, metadata) instead of bare frames
    max_frames: int  # default frames sampled per clip
    max_pixels: int  # default pixel budget per frame (processor resizes to fit)
    min_pixels: int = 56 * 56
    patch_multiple: int = 28  # frames are resized to multiples of patch * merge size
    vision_module_pattern: str = r"(^|\.)(visual|vision_tower|vision_model|audio_tower)\."
    # Omni thinkers hear the waveform itself (16 kHz mono), up to the audio encoder's window per
    # prompt; longer audio is cut there, with a note. 0: the family does not hear (cue text only).
    audio_seconds: float = 0.0
    max_audios: int = 4  # sounds per prompt where it hears: the clip's own and up to three listened windows
    # transformers: the class that holds the text-output model, the checkpoint's config part it reads,
    # and the prefix of its weights in the checkpoint (an Omni checkpoint stores `thinker.*`). Adapters
    # are saved under that prefix too, so vLLM maps their names as it maps the checkpoint's.
    hf_class: str = "AutoModelForImageTextToText"
    hf_subconfig: str | None = None
    checkpoint_prefix: str = ""
    # Where the language model's layers sit in the transformers class's module names.
    language_model_pattern: str = r".*language_model.*"
    # The video processor's settings chosen here rather than left to the library's changing default,
    # the same on every backend (transformers, the vLLM engine, the vLLM server): (name, value) pairs.
    video_processor_kwargs: tuple[tuple[str, Any], ...] = ()

    @property
    def hf_key_mapping(self) -> dict[str, str] | None:
        """Checkpoint (and adapter) weight names -> the transformers class's; None: they are the same."""
        return {rf"^{re.escape(self.checkpoint_prefix)}": ""} if self.checkpoint_prefix else None

    @property
    def hears_audio(self) -> bool:
        return self.audio_seconds > 0

    @property
    def lora_target_modules(self) -> str:
        """PEFT `target_modules` regex: language-model projections only."""
        return rf"{self.language_model_pattern}\.{_LM_PROJECTIONS}$"

    def is_vision_module(self, module_name: str) -> bool:
        return re.search(self.vision_module_pattern, module_name) is not None

    def video_for_vllm(self, frames: Sequence[Any], times: Sequence[float] = ()) -> Any:
        """A clip as this family's vLLM video input: a (T, H, W, 3) array, plus metadata if it wants it."""
        import numpy as np

        array = np.stack([np.asarray(f.convert("RGB")) for f in frames])
        if not self.video_with_metadata:
            return array
        fps = video_fps(times)
        metadata = {"fps": fps, "total_num_frames": len(frames), "frames_indices": list(range(len(frames))),
                    "duration": len(frames) / fps, "video_backend": "pyav", "do_sample_frames": False}
        return array, metadata


def video_fps(times: Sequence[float]) -> float:
    """Effective rate of sampled frames (Qwen's 2 fps default when their times are unknown)."""
    if len(times) >= 2 and times[-1] > times[0]:
        return (len(times) - 1) / (times[-1] - times[0])
    return 2.0


# Frames come already sized to the family's pixel budget; the video processor's per-frame cap would shrink
# them again by clip length, so it is off on every backend (what the library does unasked, stated, so it stays).
NO_FRAME_CAP = (("cap_pixels_per_frame", False),)

FAMILIES: dict[str, ModelFamily] = {
    f.name: f
    for f in (
        ModelFamily("qwen2_vl", ("qwen2_vl",), r"qwen2-vl", False, max_frames=8, max_pixels=448 * 448,
                    video_processor_kwargs=NO_FRAME_CAP),
        ModelFamily("qwen2_5_vl", ("qwen2_5_vl",), r"qwen2\.5-vl", True, max_frames=8, max_pixels=448 * 448,
                    video_processor_kwargs=NO_FRAME_CAP),
        ModelFamily("qwen3_vl", ("qwen3_vl", "qwen3_vl_moe"), r"qwen3-vl", True, max_frames=8, max_pixels=448 * 448,
                    patch_multiple=32, video_processor_kwargs=NO_FRAME_CAP),
        # Thinkers only: text out; the talker and the speech decoder are never loaded. Their
        # Whisper-style front end takes 30 s per audio item (4 s audio windows of 25 tokens/s).
        ModelFamily("qwen2_5_omni", ("qwen2_5_omni",), r"qwen2\.5-omni", False, max_frames=8, max_pixels=448 * 448,
                    video_processor_kwargs=NO_FRAME_CAP, audio_seconds=30.0,
                    hf_class="Qwen2_5OmniThinkerForConditionalGeneration",
                    hf_subconfig="thinker_config", checkpoint_prefix="thinker.",
                    language_model_pattern=r"model\.layers\..*"),
        ModelFamily("qwen3_omni", ("qwen3_omni_moe",), r"qwen3-omni", True, max_frames=8, max_pixels=448 * 448,
                    patch_multiple=32, audio_seconds=30.0, hf_class="Qwen3OmniMoeThinkerForConditionalGeneration",
                    hf_subconfig="thinker_config", checkpoint_prefix="thinker.",
                    language_model_pattern=r"model\.layers\..*"),
    )
}


# Thinking checkpoints: their own think block, opened by the chat template or by the model. The grammar
# applies after its end. Known ids are data here; any local checkpoint whose chat template speaks of the
# block thinks too.
# `--reasoning before`: a block the prompt asks for, which any model can write.
PROMPTED_BLOCK = Reasoning(order="before", open="<reasoning>\n", close="</reasoning>", max_tokens=512)
QWEN_THINK = Reasoning(order="native", open="<think>\n", close="</think>", max_tokens=512, after="\n\n")
THINKING_IDS = ((r"qwen3-vl-.*thinking", QWEN_THINK), (r"qwen3-omni-.*thinking", QWEN_THINK))
_TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json", "tokenizer_config.json")


def think_block(model: str | Path) -> Reasoning | None:
    """The think block of a thinking checkpoint (its chat template's, or its hub id's); None: it has none."""
    path = Path(model)
    if path.is_dir():
        for name in _TEMPLATE_FILES:
            file = path / name
            if file.is_file() and "<think>" in file.read_text(encoding="utf-8", errors="replace"):
                return QWEN_THINK
        return None
    return next((block for pattern, block in THINKING_IDS if re.search(pattern, str(model), re.IGNORECASE)), None)


def family_for(model: str | Path) -> ModelFamily:
    """The family of a local checkpoint (from its config.json) or of a hub id (from its name)."""
    config_file = Path(model) / "config.json"
    if config_file.is_file():
        model_type = json.loads(config_file.read_text()).get("model_type", "")
        for family in FAMILIES.values():
            if model_type in family.model_types:
                return family
        raise ValueError(f"{model}: model_type {model_type!r} is not a supported family ({', '.join(FAMILIES)})")
    for family in FAMILIES.values():
        if re.search(family.id_pattern, str(model), re.IGNORECASE):
            return family
    raise ValueError(f"{model}: not a supported model family ({', '.join(FAMILIES)}); "
                     "pass a local checkpoint directory or a Qwen2-VL / Qwen2.5-VL / Qwen3-VL / Qwen Omni hub id")


def known_family(model: str | Path | None) -> ModelFamily | None:
    """The model's family, or None where the registry cannot tell (no model, or e.g. a served model name)."""
    try:
        return family_for(model) if model else None
    except ValueError:
        return None


def resolve_model(model: str) -> str:
    """`model` if it is a local directory or looks like a hub id; a clear error otherwise.

    Hub ids are passed through untouched (the libraries download them); when the hub is
    unreachable the loaders' own error is wrapped by `explain_load_error`.
    """
    path = Path(model).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{model}: no config.json; not a model checkpoint directory")
        return str(path)
    # `runs/tiny-modle` has a hub id's shape, but its first part is a folder here: a mistyped local path.
    if model.count("/") == 1 and not model.startswith((".", "/", "~")) and not path.parent.is_dir():
        return model
    raise FileNotFoundError(f"{model}: no such model directory. Build an offline test model with "
                            "`mllm-mer make-tiny DIR`, or pass a hub id such as " + DEFAULT_MODEL)


def explain_load_error(model: str, error: Exception) -> ServiceError:
    first = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]  # one line, not the hub's essay
    return ServiceError(
        f"could not load model {model!r} ({first}); without network access, `mllm-mer demo` runs an offline "
        "tiny model, and --model DIR loads a checkpoint downloaded elsewhere (or built by `mllm-mer make-tiny DIR`)")
