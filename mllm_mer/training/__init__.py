"""LoRA fine-tuning: SFT, distillation, GRPO."""
import warnings

# TRL's import warns that vLLM 0.32 is newer than it knows; the versions pinned here are tested together.
warnings.filterwarnings("ignore", message="TRL currently supports vLLM versions", category=UserWarning)
