"""A small random-weight Qwen2.5-Omni checkpoint whose thinker (audio and vision encoders, language
model) transformers and vLLM both load offline; the talker and the speech decoder are never built
(`enable_audio_output: false`), so the weights are the thinker's alone (`thinker.*`)."""
from __future__ import annotations

import json
from pathlib import Path

from mllm_mer.synthetic.tiny import TinySize, build_tokenizer, mrope_section

OMNI_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>",
               "<|IMAGE|>", "<|VIDEO|>", "<|vision_bos|>", "<|vision_eos|>"]
# The processor finds its placeholders by role on the tokenizer.
OMNI_NAMED = {"audio_token": "<|AUDIO|>", "audio_bos_token": "<|audio_bos|>", "audio_eos_token": "<|audio_eos|>",
              "image_token": "<|IMAGE|>", "video_token": "<|VIDEO|>", "vision_bos_token": "<|vision_bos|>",
              "vision_eos_token": "<|vision_eos|>"}

# Qwen2.5-Omni's placeholders in content-part messages (audio, images, video).
OMNI_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content %}<|vision_bos|><|IMAGE|><|vision_eos|>"
    "{% elif content['type'] == 'video' or 'video' in content %}<|vision_bos|><|VIDEO|><|vision_eos|>"
    "{% elif content['type'] == 'audio' or 'audio' in content %}<|audio_bos|><|AUDIO|><|audio_eos|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def thinker_config(dims: TinySize, ids: dict[str, int], vocab: int) -> dict:
    text = dict(vocab_size=vocab, hidden_size=dims.hidden, intermediate_size=dims.intermediate,
                num_hidden_layers=dims.layers, num_attention_heads=dims.heads, num_key_value_heads=dims.kv_heads,
                max_position_embeddings=32768, rms_norm_eps=1e-6, tie_word_embeddings=False,
                initializer_range=dims.init_range,
                rope_parameters={"rope_type": "default", "rope_theta": 1000000.0,
                                 "mrope_section": mrope_section(dims.hidden // dims.heads)},
                bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"])
    vision = dict(depth=dims.vision_depth, hidden_size=dims.vision_embed, intermediate_size=2 * dims.vision_embed,
                  num_heads=dims.vision_heads, out_hidden_size=dims.hidden, window_size=112,
                  fullatt_block_indexes=[dims.vision_depth - 1], patch_size=14, spatial_merge_size=2,
                  temporal_patch_size=2, initializer_range=dims.init_range)
    # Whisper-style audio encoder: 128 mel bins, 100 frames per window, one token per 40 ms.
    audio = dict(num_mel_bins=128, encoder_layers=dims.vision_depth, encoder_attention_heads=dims.vision_heads,
                 encoder_ffn_dim=2 * dims.vision_embed, d_model=dims.vision_embed, output_dim=dims.hidden,
                 max_source_positions=1500, n_window=100, initializer_range=dims.init_range)
    return dict(text_config=text, vision_config=vision, audio_config=audio, audio_token_index=ids["<|AUDIO|>"],
                image_token_index=ids["<|IMAGE|>"], video_token_index=ids["<|VIDEO|>"],
                audio_start_token_id=ids["<|audio_bos|>"], audio_end_token_id=ids["<|audio_eos|>"],
                vision_start_token_id=ids["<|vision_bos|>"], vision_end_token_id=ids["<|vision_eos|>"],
                user_token_id=ids["<|im_start|>"], initializer_range=dims.init_range, tie_word_embeddings=False)


def make_tiny_omni(out: Path, dims: TinySize, size: str, seed: int = 0) -> Path:
    import torch
    import transformers

    tokenizer = build_tokenizer(dims, OMNI_TOKENS, OMNI_CHAT_TEMPLATE, OMNI_NAMED)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in OMNI_TOKENS}
    # The talker is never built; its config only needs ids the checkpoint's vocabulary has.
    talker = {"tts_text_start_token_id": ids["<|im_start|>"], "tts_text_end_token_id": ids["<|im_end|>"],
              "tts_text_pad_token_id": ids["<|endoftext|>"], "vision_start_token_id": ids["<|vision_bos|>"],
              "vision_end_token_id": ids["<|vision_eos|>"], "audio_start_token_id": ids["<|audio_bos|>"],
              "audio_end_token_id": ids["<|audio_eos|>"]}
    config = transformers.Qwen2_5OmniConfig(thinker_config=thinker_config(dims, ids, len(tokenizer)),
                                            talker_config=talker, enable_audio_output=False)
    torch.manual_seed(seed)
    model = transformers.Qwen2_5OmniForConditionalGeneration(config).to(torch.float32).eval()
    model.save_pretrained(out, safe_serialization=True)
    generation = {"eos_token_id": ids["<|im_end|>"], "pad_token_id": ids["<|endoftext|>"], "do_sample": False}
    (out / "generation_config.json").write_text(json.dumps(generation) + "\n")
    pixels = {"shortest_edge": 56 * 56, "longest_edge": dims.max_pixels}
    processor = transformers.Qwen2_5OmniProcessor(
        image_processor=transformers.Qwen2VLImageProcessor(size=pixels),
        video_processor=transformers.Qwen2VLVideoProcessor(size=pixels),
        feature_extractor=transformers.WhisperFeatureExtractor(feature_size=128), tokenizer=tokenizer,
        chat_template=OMNI_CHAT_TEMPLATE)
    processor.save_pretrained(out)
    (out / "mllm_mer_tiny.json").write_text(json.dumps({"arch": "qwen2_5_omni", "size": size, "seed": seed}) + "\n")
    return out
