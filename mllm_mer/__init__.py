"""Multimodal emotion recognition with a multimodal LLM."""
import logging

# bitsandbytes (imported by peft, trl and transformers' quantizers) logs at import, on CPUs with AVX512-BF16, that it
# cannot fetch an optional 4-bit CPU kernel ("Failed to load CPU gemm_4bit_forward from kernels-community"): a slower
# fallback is used, and the line depends on the machine, not on anything a user did. Set here, before any path
# (inference, fine-tuning, a training import, a launched worker) can import bitsandbytes; errors still show.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)


class _OmniTalkerDefaults(logging.Filter):
    """transformers checks a Qwen2.5-Omni config by printing a *default* talker config, whose text-token ids
    lie outside its own 8448-entry codec vocabulary: seven warnings on every load of any Omni checkpoint,
    about settings no checkpoint of ours uses (the talker is never built). Only those are dropped."""

    NAMES = ("tts_text_start", "tts_text_end", "tts_text_pad", "vision_start", "vision_end", "audio_start",
             "audio_end")

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not (text.startswith("Model config: ") and "(between 0 and 8447)" in text
                    and any(f" {name}_token_id must be " in text for name in self.NAMES))


logging.getLogger("transformers.configuration_utils").addFilter(_OmniTalkerDefaults())
