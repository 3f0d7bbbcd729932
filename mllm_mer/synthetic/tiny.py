"""Builds small random-weight checkpoints of the real architectures, fully offline.

Tests and offline demos need a model that transformers and vLLM both load without
the hub: the real Qwen2-VL / Qwen2.5-VL classes (the Omni thinker: `tiny_omni`) at toy sizes, a byte-level BPE
tokenizer trained here on local text with Qwen's special tokens, Qwen's chat
template, and the image/video processor configs, so that
`AutoProcessor.from_pretrained(dir)` works with HF_HUB_OFFLINE=1.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|image_pad|>", "<|video_pad|>"]

# Qwen2-VL's own chat template (content-part messages; images and videos become pad tokens).
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# A thinking checkpoint's template (Qwen3-VL Thinking's habit): the assistant turn opens the think block.
THINK_TOKENS = ["<think>", "</think>"]
# Qwen2's own pre-tokenizer split: runs of newlines stay one piece whatever follows them (GPT-2's default splits
# "\n\n{" as "\n" "\n" "{" but a trailing "\n\n" as one), so a prompt that ends in "</think>\n\n" tokenises
# alike alone and before its answer, as it does in the real checkpoints.
QWEN_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
              r"\s*[\r\n]+|\s+(?!\S)|\s+")
THINKING_TEMPLATE = CHAT_TEMPLATE.replace("<|im_start|>assistant\n{% endif %}",
                                          "<|im_start|>assistant\n<think>\n{% endif %}")


@dataclass(frozen=True)
class TinySize:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vision_depth: int
    vision_embed: int
    vision_heads: int
    vocab: int
    max_pixels: int  # per image / video frame
    # Weight scale. At hidden 128 the usual 0.02 bounds the logits (|h| * |w_token| ~ 2.5), so no
    # adapter could ever make the model confident; 0.1 lets the tiny model learn in tests.
    init_range: float = 0.02


SIZES = {
    # ~0.8 M parameters: all overhead, for tests.
    "tiny": TinySize(hidden=128, layers=2, heads=2, kv_heads=2, intermediate=256, vision_depth=2,
                     vision_embed=64, vision_heads=2, vocab=1024, max_pixels=112 * 112, init_range=0.1),
    # Qwen2-0.5B text dimensions (~185 M parameters): for benchmarks.
    "small": TinySize(hidden=896, layers=12, heads=14, kv_heads=2, intermediate=4864, vision_depth=4,
                      vision_embed=256, vision_heads=4, vocab=4096, max_pixels=224 * 224),
}
ARCHES = ("qwen2_vl", "qwen2_5_vl")  # the Omni thinker: tiny_omni


def training_text() -> list[str]:
    """Local, deterministic text for the tokenizer: the project's prompts plus stdlib docstrings."""
    import argparse
    import codecs
    import collections
    import dataclasses
    import functools
    import json as json_module
    import string
    import textwrap

    from mllm_mer.core.paths import PROMPTS_DIR

    # A frozen corpus (the bundled prompt files as they once were, one text each): editing a label set or a
    # template must not change the test model, whose random answers many tests read.
    texts = list(json_module.loads((PROMPTS_DIR / "tiny" / "tokenizer_corpus.json").read_text(encoding="utf-8")))
    texts += [m.__doc__ or "" for m in (argparse, codecs, collections, dataclasses, functools, json_module,
                                         string, textwrap)]
    texts.append('{"emotion":"neutral","sentiment":"positive","rationale":"","cues":{}} 0123456789')
    return texts


def build_tokenizer(size: TinySize, special_tokens: list[str] = SPECIAL_TOKENS, chat_template: str = CHAT_TEMPLATE,
                    named: dict[str, str] | None = None, plain_tokens: list[str] | None = None,
                    qwen_split: bool = False):
    """A byte-level BPE tokenizer trained on local text, with the family's special tokens (and, for
    processors that look tokens up by role, their names: `audio_token` -> `<|AUDIO|>`)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    if qwen_split:
        from tokenizers import Regex

        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=size.vocab - len(special_tokens), special_tokens=[],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(training_text(), trainer=trainer)
    tok.add_special_tokens(special_tokens)
    if plain_tokens:  # added but not special, as Qwen3 adds <think>: decoded text keeps them
        from tokenizers import AddedToken

        tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in plain_tokens])
    extra = {"extra_special_tokens": named} if named else {}
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token=None,
        bos_token=None, model_max_length=32768, chat_template=chat_template, padding_side="left", **extra)


def mrope_section(head_dim: int) -> list[int]:
    """mrope splits half the head dim over (time, height, width), in Qwen's proportions."""
    half = head_dim // 2
    return [half // 4, 3 * half // 8, half - half // 4 - 3 * half // 8]


def _tokenizer(dims: TinySize, template: str, thinking: bool):
    return build_tokenizer(dims, chat_template=template, plain_tokens=THINK_TOKENS if thinking else None,
                           qwen_split=thinking)


def make_tiny(out_dir: str | Path, arch: str = "qwen2_vl", size: str = "tiny", seed: int = 0,
              thinking: bool = False) -> Path:
    """Write a random-weight checkpoint of `arch` at `size` to `out_dir` and return its path (`thinking`: with
    think tokens and a template that opens the think block)."""
    import torch
    import transformers

    if arch not in ARCHES:
        raise ValueError(f"arch must be one of {ARCHES}, not {arch!r}")
    if size not in SIZES:
        raise ValueError(f"size must be one of {tuple(SIZES)}, not {size!r}")
    dims = SIZES[size]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    template = THINKING_TEMPLATE if thinking else CHAT_TEMPLATE
    tokenizer = _tokenizer(dims, template, thinking)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    mrope = mrope_section(dims.hidden // dims.heads)
    text_config = dict(
        vocab_size=len(tokenizer), hidden_size=dims.hidden, intermediate_size=dims.intermediate,
        num_hidden_layers=dims.layers, num_attention_heads=dims.heads, num_key_value_heads=dims.kv_heads,
        max_position_embeddings=32768, rms_norm_eps=1e-6, tie_word_embeddings=False,
        initializer_range=dims.init_range,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": mrope},
        bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
    )
    vision_config = dict(depth=dims.vision_depth, num_heads=dims.vision_heads, patch_size=14,
                         spatial_merge_size=2, temporal_patch_size=2, in_channels=3)
    if arch == "qwen2_vl":
        vision_config.update(embed_dim=dims.vision_embed, hidden_size=dims.hidden, mlp_ratio=2)
        config_cls, model_cls = transformers.Qwen2VLConfig, transformers.Qwen2VLForConditionalGeneration
        proc_cls, img_cls, vid_cls = (transformers.Qwen2VLProcessor, transformers.Qwen2VLImageProcessor,
                                      transformers.Qwen2VLVideoProcessor)
    else:
        vision_config.update(hidden_size=dims.vision_embed, out_hidden_size=dims.hidden,
                             intermediate_size=2 * dims.vision_embed, window_size=112,
                             fullatt_block_indexes=[dims.vision_depth - 1])
        config_cls, model_cls = transformers.Qwen2_5_VLConfig, transformers.Qwen2_5_VLForConditionalGeneration
        proc_cls, img_cls, vid_cls = (transformers.Qwen2_5_VLProcessor, transformers.Qwen2VLImageProcessor,
                                      transformers.Qwen2VLVideoProcessor)
    config = config_cls(
        text_config=text_config, vision_config=vision_config, tie_word_embeddings=False,
        initializer_range=dims.init_range, image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    model = model_cls(config).to(torch.float32).eval()
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.generation_config.do_sample = False
    model.save_pretrained(out, safe_serialization=True)

    pixels = {"shortest_edge": 56 * 56, "longest_edge": dims.max_pixels}
    processor = proc_cls(
        image_processor=img_cls(size=pixels), video_processor=vid_cls(size=pixels),
        tokenizer=tokenizer, chat_template=template)
    processor.save_pretrained(out)
    (out / "mllm_mer_tiny.json").write_text(json.dumps(dict(arch=arch, size=size, seed=seed, thinking=thinking)))
    return out
