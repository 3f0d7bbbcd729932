"""Loading a transformers model and its processor; shared by the transformers backend and training."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from mllm_mer.config import ModelConfig
from mllm_mer.core.families import explain_load_error, family_for, resolve_model
from mllm_mer.core.types import Prompt
from mllm_mer.media.audio import SAMPLE_RATE


def torch_dtype(name: str, device: str) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def processor_inputs(processor: Any, prompts: Sequence[Prompt], texts: Sequence[str]) -> dict[str, Any]:
    """Tokenise texts and preprocess the prompts' images and frames in one batched call."""
    images = [im for p in prompts for im in p.images]
    videos = [list(v) for p in prompts for v in p.videos]
    audios = [a for p in prompts for a in p.audios]
    kwargs: dict[str, Any] = {"text": list(texts), "padding": True, "return_tensors": "pt"}
    if images:
        kwargs["images"] = images
    if videos:
        kwargs["videos"] = videos
    if audios:  # 16 kHz mono waveforms (Omni families)
        kwargs.update(audio=audios, sampling_rate=SAMPLE_RATE)
    return processor(**kwargs)


def load_model_and_processor(model: ModelConfig, device: str, **model_kwargs: Any):
    """The model (safetensors only) and its processor, for inference and for training."""
    import transformers

    config = model
    model_id = resolve_model(config.model)
    family = family_for(model_id)
    try:
        processor = transformers.AutoProcessor.from_pretrained(model_id, trust_remote_code=config.trust_remote_code)
        if family.hf_subconfig:  # an Omni checkpoint: its thinker alone, from its part of the config
            whole = transformers.AutoConfig.from_pretrained(model_id, trust_remote_code=config.trust_remote_code)
            model_kwargs.update(config=getattr(whole, family.hf_subconfig), key_mapping=family.hf_key_mapping)
        model = getattr(transformers, family.hf_class).from_pretrained(
            model_id, dtype=model_kwargs.pop("dtype", torch_dtype(config.dtype, device)),
            trust_remote_code=config.trust_remote_code, use_safetensors=True, **model_kwargs)
    except OSError as error:
        raise explain_load_error(config.model, error) from error
    processor.tokenizer.padding_side = "left"
    video = getattr(processor, "video_processor", None)
    for name, value in family.video_processor_kwargs:  # the processor's defaults for every call it serves
        if video is not None:
            setattr(video, name, value)
    return model, processor


def with_adapters(model: Any, adapters: dict[str, str], model_id: str, trainable: bool = False) -> Any:
    """`model` with the PEFT adapters loaded by name; adapter weights named as in the checkpoint
    (`thinker.*` for an Omni family) are mapped onto the class as the base weights were."""
    from peft import PeftModel

    mapping = family_for(resolve_model(model_id)).hf_key_mapping
    names = list(adapters)
    model = PeftModel.from_pretrained(model, adapters[names[0]], adapter_name=names[0], is_trainable=trainable,
                                      key_mapping=mapping)
    for name in names[1:]:
        model.load_adapter(adapters[name], adapter_name=name, key_mapping=mapping)
    return model


def name_adapter_as_checkpoint(adapter_dir: Any, model_id: str) -> None:
    """Rename a saved adapter's weights to the checkpoint's prefix (`base_model.model.thinker.model...`),
    where vLLM's weight mapper finds the language model; a no-op for families without a prefix."""
    from pathlib import Path

    from safetensors.torch import load_file, save_file

    prefix = family_for(resolve_model(model_id)).checkpoint_prefix
    weights = Path(adapter_dir) / "adapter_model.safetensors"
    if not prefix or not weights.is_file():
        return
    head = "base_model.model."
    state = load_file(weights)
    renamed = {head + prefix + k.removeprefix(head) if not k.startswith(head + prefix) else k: v
               for k, v in state.items()}
    save_file(renamed, weights, metadata={"format": "pt"})
