"""A GRPO recipe's own checks and reward options: light (no TRL, no torch), so that `finetune` refuses a
recipe that cannot work before it imports the trainer (seconds of imports) or loads any model."""
from __future__ import annotations

from mllm_mer.config import TrainConfig
from mllm_mer.training.rewards import RewardOptions


def reward_options(cfg: TrainConfig) -> RewardOptions:
    rl = cfg.rl
    return RewardOptions(similarity=rl.similarity, wheel=rl.wheel, partial_credit=rl.partial_credit,
                         max_chars=rl.max_chars, max_reasoning_chars=rl.max_reasoning_chars,
                         weights=dict(rl.rewards))


def check_recipe(cfg: TrainConfig) -> None:
    """The GRPO settings that cannot work, refused before any model loads."""
    rl = cfg.rl
    if not cfg.optim.output_dir:
        raise ValueError("the recipe needs output_dir")
    if cfg.optim.batch_size % rl.num_generations:
        raise ValueError(f"batch_size ({cfg.optim.batch_size}) counts completions: it must be a multiple of "
                         f"num_generations ({rl.num_generations})")
    if not rl.rewards:
        raise ValueError("the rl section needs at least one reward")
    if rl.use_vllm and rl.constrained:
        raise ValueError("use_vllm samples through TRL's vLLM path, which takes no JSON schema: set "
                         "constrained: false (the format reward then shapes the answer)")
    reward_options(cfg)  # unknown reward names, bad ranges
    if rl.rewards.get("reasoning_match") and not cfg.traces.reasoning_col:
        raise ValueError("the reasoning_match reward reads each sample's reference reasoning: name its manifest "
                         "column (reasoning_col, --reasoning-col)")
