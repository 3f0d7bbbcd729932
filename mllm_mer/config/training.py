"""The config sections of fine-tuning: the adapter, the optimiser, RL and training targets beyond labels."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mllm_mer.config.tree import Section, option
from mllm_mer.core.registry import TRAINING_METHODS


@dataclass
class LoraConfig(Section):
    """The adapter being trained."""

    lora_r: int = option(16, "LoRA rank", low=1)
    lora_alpha: int = option(32, "LoRA scaling numerator", low=1)
    lora_dropout: float = option(0.05, "dropout on the LoRA path", low=0.0, high=0.99)
    target_modules: list[str] | None = option(None, "module names, or one regex (default: the family's "
                                                    "language-model projections)")
    modules_to_save: list[str] = option([], "fully trained extra modules (not vLLM-servable)")
    allow_vision_lora: bool = option(False, "allow LoRA on the vision tower (vLLM cannot serve it)")
    quantization: str | None = option(None, "null | nf4 (QLoRA, bitsandbytes 4-bit)")
    gradient_checkpointing: bool = option(False, "trade compute for memory")
    init_adapter: str | None = option(None, "start from this adapter (an SFT run's adapter/), trained further; "
                                            "its saved prompt is the recipe's default")


@dataclass
class OptimConfig(Section):
    """Training loop and checkpoints."""

    method: str = option("sft", "sft: supervised on the gold answers; grpo: reinforcement with verifiable "
                                "rewards (the `rl` section), never shown a gold answer",
                         choices=tuple(TRAINING_METHODS))
    output_dir: str | None = option(None, "checkpoints, logs, the final adapter, resolved config, dev metrics")
    train_split: str = option("train", "split trained on")
    dev_split: str | None = option("dev", "best checkpoint is chosen here; never a test split")
    limit_train: int | None = option(None, "first N training samples", low=1)
    limit_dev: int | None = option(None, "first N dev samples", low=1)
    epochs: float = option(1.0, "passes over the training split", low=0.0)
    max_steps: int = option(-1, "stop after this many steps (-1: epochs decide)")
    learning_rate: float = option(2e-4, "peak learning rate", low=0.0)
    batch_size: int = option(4, "samples per device and step (grpo: completions, a multiple of num_generations)",
                             low=1)
    grad_accum: int = option(1, "gradient accumulation steps", low=1)
    warmup_ratio: float = option(0.03, "share of steps warming up", low=0.0, high=1.0)
    weight_decay: float = option(0.0, "AdamW weight decay", low=0.0)
    lr_scheduler: str = option("cosine", "transformers scheduler name")
    eval_steps: int | None = option(None, "dev evaluation (and checkpoint) every N steps; unset: every epoch", low=1)
    save_steps: int | None = option(None, "checkpoint every N steps (default: eval_steps)", low=1)
    save_total_limit: int | None = option(3, "checkpoints kept", low=1)
    logging_steps: int = option(10, "log every N steps", low=1)
    metric_for_best: str = option("macro_f1", "accuracy | weighted_f1 | macro_f1 | uar, of the first task")
    resume_from_checkpoint: str | None = option(None, "a checkpoint dir, or true for the latest")
    report_to: list[str] = option(["tensorboard"], "transformers loggers")


@dataclass
class RLConfig(Section):
    """GRPO: each prompt answered num_generations times, each answer scored by the weighted rewards
    (`mllm_mer.training.rewards`), the policy moved towards the answers better than their group's mean."""

    num_generations: int = option(8, "answers sampled per prompt (the group)", low=2)
    beta: float = option(0.0, "KL coefficient against the starting policy (0: no reference pass)", low=0.0)
    temperature: float = option(1.0, "sampling temperature of the answers", low=0.01)
    top_p: float = option(1.0, "nucleus sampling of the rollouts (reasoning and answer): the fewest tokens holding "
                               "this much probability; below 1 keeps a small model's long tail out of them",
                          low=0.01, high=1.0)
    max_completion_length: int = option(128, "tokens per answer", low=1)
    rewards: dict[str, float] = option({"correct": 1.0, "format": 0.5}, "reward name -> weight: correct, format, "
                                                                          "grounded, length, reasoning_length, "
                                                                          "reasoning_match (needs reasoning_col)")
    similarity: Literal["none", "wheel", "valence"] = option("none", "partial credit for a near label: none, the "
                                                                     "same emotion-wheel sector, the same valence")
    wheel: str = option("plutchik", "the wheel `similarity: wheel` reads")
    partial_credit: float = option(0.5, "reward of a near label", low=0.0, high=1.0)
    max_chars: int = option(400, "answer length before the length penalty starts", low=1)
    max_reasoning_chars: int = option(400, "reasoning length before the reasoning_length penalty starts", low=1)
    loss_type: str = option("dapo", "TRL loss: dapo | grpo | dr_grpo | bnpo")
    scale_rewards: str = option("group", "advantage scaling: group | batch | none")
    num_iterations: int = option(1, "optimisation passes per generated batch", low=1)
    credit: Literal["all", "reasoning"] = option(
        "all", "the rollout tokens the policy gradient reaches under a reasoning order: all (the reasoning block "
               "and the answer) or reasoning (the block only; the answer keeps the mapping from reasoning to label "
               "that SFT taught, so a label reward cannot teach it to contradict its own reasoning)")
    use_vllm: bool = option(False, "generate with vLLM inside the trainer (GPU, colocate mode)")
    constrained: bool = option(True, "sample answers under the answer's JSON schema, as predict decodes them "
                                     "(false: free sampling, which the format reward then shapes)")


@dataclass
class TraceConfig(Section):
    """Training targets beyond the labels: an agent's scripted traces, each sample's actions rendered as the
    agent sees them (its budget and tools: the recipe's `agent_*` options, `AgentConfig`), and reasoning text."""

    trace_col: str | None = option(None, "manifest column holding each sample's actions (a JSON list of "
                                         "{tool, args}; the answer from the gold labels is added); set: train "
                                         "the agent, loss on every action, observations masked")
    reasoning_col: str | None = option(None, "manifest column holding each sample's reasoning text; with "
                                             "--reasoning before|native the target is the reasoning block (as "
                                             "inference writes it), then the answer")


__all__ = ["LoraConfig", "OptimConfig", "RLConfig", "TraceConfig"]
