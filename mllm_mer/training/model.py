"""The model being trained: a freshly loaded base (4-bit for QLoRA) with LoRA on its language model, and
folding an adapter back into the base weights."""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import torch

from mllm_mer.config import ModelConfig, TrainConfig
from mllm_mer.core.families import family_for, resolve_model

log = logging.getLogger(__name__)


def train_dtype(cfg: TrainConfig) -> torch.dtype:
    from mllm_mer.backends.hf_loading import torch_dtype

    return torch_dtype(cfg.model.dtype, "cuda" if torch.cuda.is_available() else "cpu")


def lora_targets(cfg: TrainConfig, model: torch.nn.Module) -> str | list[str]:
    """The target modules, refusing vision-tower modules unless explicitly allowed."""
    lora = cfg.lora
    family = family_for(resolve_model(cfg.model.model))
    targets = lora.target_modules or family.lora_target_modules
    if isinstance(targets, list) and len(targets) == 1 and not re.fullmatch(r"\w+", targets[0]):
        targets = targets[0]  # one regex
    if isinstance(targets, str):
        matched = [n for n, _ in model.named_modules() if re.fullmatch(targets, n)]
    else:
        matched = [n for n, _ in model.named_modules() if n.rsplit(".", 1)[-1] in targets]
    if not matched:
        raise ValueError(f"target_modules {targets!r} match no module of {cfg.model.model}")
    vision = [n for n in matched if family.is_vision_module(n)]
    if vision and not lora.allow_vision_lora:
        raise ValueError(f"target_modules {targets!r} reach the vision tower ({vision[0]} ...), where vLLM "
                         "cannot apply LoRA; narrow them, or set allow_vision_lora (transformers-only adapters)")
    if vision:
        log.warning("LoRA on %d vision-tower modules: vLLM will not serve this adapter", len(vision))
    return targets


def load_trainable_model(cfg: TrainConfig):
    """A freshly loaded base model (4-bit for QLoRA) with LoRA on it; the vision tower frozen."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    from mllm_mer.backends.hf_loading import load_model_and_processor, with_adapters

    lora_cfg = cfg.lora
    kwargs: dict[str, Any] = {"dtype": train_dtype(cfg)}
    if lora_cfg.quantization == "nf4":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=train_dtype(cfg))
    elif lora_cfg.quantization:
        raise ValueError(f"quantization must be null or nf4, not {lora_cfg.quantization!r}")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, processor = load_model_and_processor(cfg.model, device, **kwargs)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    if lora_cfg.quantization:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=lora_cfg.gradient_checkpointing)
    elif lora_cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    if lora_cfg.init_adapter:  # trained further (GRPO after SFT): its own rank and targets
        model = with_adapters(model, {"default": lora_cfg.init_adapter}, cfg.model.model, trainable=True)
    else:
        lora = LoraConfig(r=lora_cfg.lora_r, lora_alpha=lora_cfg.lora_alpha, lora_dropout=lora_cfg.lora_dropout,
                          target_modules=lora_targets(cfg, model), modules_to_save=lora_cfg.modules_to_save or None)
        model = get_peft_model(model, lora)
    if not lora_cfg.quantization:
        model = model.to(device)
    return model, processor


def merge(model: str, adapter: str, out: str | Path) -> Path:
    """Fold an adapter into the base weights (safetensors) next to the base processor."""
    from mllm_mer.backends.hf_loading import load_model_and_processor, with_adapters

    base, processor = load_model_and_processor(ModelConfig(model=model), "cpu")
    merged = with_adapters(base, {"default": adapter}, model).merge_and_unload()
    out = Path(out)
    merged.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    return out
