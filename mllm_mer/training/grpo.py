"""GRPO fine-tuning: reinforcement with verifiable rewards, on the same Samples and prompt path as SFT.

The recipe is an SFT recipe with `method: grpo` and an `rl` section. Each training prompt is what
`pipeline.prepare` builds for inference; the model answers it `num_generations` times, each answer is
scored by the recipe's weighted rewards (`rewards`: the gold label is read, never shown or trained on as
text), and TRL's GRPOTrainer moves the LoRA towards the answers better than their group. Dev evaluation,
checkpoint choice, resuming and the saved adapter (with its prompt) are SFT's. With `reasoning: before|native`
(the recipe's, else the initial adapter's) each answer is a reasoning block sampled free and bounded, then the
constrained answer after it, as `predict` decodes it; the loss covers both, the rewards read the answer after
the block, and the adapter's saved prompt keeps the order.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from mllm_mer.config import TrainConfig
from mllm_mer.training.grpo_recipe import check_recipe, reward_options
from mllm_mer.training.grpo_trainer import PreparedRows, with_ids
from mllm_mer.training.rewards import REWARDS, RewardOptions


class RewardColumn:
    """One reward as TRL calls it: a list of completions with the dataset's `sample_id` column beside them."""

    def __init__(self, name: str, rows: PreparedRows, options: RewardOptions):
        self.__name__, self.rows, self.options = name, rows, options  # TRL logs rewards/<__name__>/mean

    def __call__(self, prompts: list, completions: list, sample_id: list[str], **_: Any) -> list[float]:
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        reward = REWARDS[self.__name__]
        return [reward(text, self.rows.asked[i], self.options) for text, i in zip(texts, sample_id, strict=True)]


def blocked_tokens(model, processor) -> list[int]:
    """Special tokens an answer never contains: a sampled media placeholder (`<|video_pad|>`) would break the
    scored forward pass, which expands each into the media's features. Ends of turn stay allowed."""
    ends = model.generation_config.eos_token_id
    ends = {ends} if isinstance(ends, int) else set(ends or ())
    ends.add(processor.tokenizer.eos_token_id)
    return sorted(i for i, token in processor.tokenizer.added_tokens_decoder.items() if token.special and i not in ends)


def answer_constraint(model, processor, cfg: TrainConfig):
    """The transformers backend's schema constraint over the model being trained (rollouts continue TRL's
    own prompt ids, which end where the answer starts: the whole answer is decoded, its opening too)."""
    from mllm_mer.backends.hf import TransformersBackend
    from mllm_mer.config import BackendConfig

    backend = TransformersBackend.wrap(model, processor, BackendConfig(model=cfg.model))
    return functools.partial(backend.constraint, opened=False)


def grpo_arguments(cfg: TrainConfig, out: Path, with_dev: bool, blocked: list[int]):
    from trl import GRPOConfig

    from mllm_mer.training.sft import training_arguments

    rl = cfg.rl
    return training_arguments(
        cfg, out, with_dev, GRPOConfig, num_generations=rl.num_generations, beta=rl.beta,
        temperature=rl.temperature, top_p=rl.top_p, max_completion_length=rl.max_completion_length,
        reward_weights=list(rl.rewards.values()), loss_type=rl.loss_type, scale_rewards=rl.scale_rewards,
        num_iterations=rl.num_iterations, use_vllm=rl.use_vllm, vllm_mode="colocate", log_completions=False,
        eval_on_start=with_dev,  # the starting policy's dev score: the baseline every later one is read against
        # transformers' generate suppresses tokens; vLLM's sampling takes a bias
        generation_kwargs={"logit_bias": {i: -100.0 for i in blocked}} if rl.use_vllm else {"suppress_tokens": blocked})


def rows_dataset(samples):
    """TRL's dataset: one row per sample; the prompt itself is built from the sample by `PreparedRows`."""
    import datasets

    return datasets.Dataset.from_list([{"prompt": [{"role": "user", "content": f"sample {s.id}"}],
                                        "sample_id": s.id} for s in samples])


def build_trainer(cfg: TrainConfig, callbacks: list | None = None):
    """The recipe made ready: (trainer, recipe, processor)."""
    from mllm_mer.training.grpo_trainer import MediaGRPOTrainer
    from mllm_mer.training.model import load_trainable_model
    from mllm_mer.training.sft import dev_evaluation, ready_recipe

    check_recipe(cfg)
    out = Path(cfg.optim.output_dir)
    recipe = ready_recipe(cfg, out)
    if recipe.agent is not None:
        raise ValueError("grpo trains single-pass answers; agent traces (trace_col) train with method: sft")
    if recipe.setup.reasoning is not None and cfg.rl.use_vllm:
        raise ValueError(f"reasoning: {recipe.setup.reasoning.order} samples each rollout in two passes (the block, "
                         "then the answer), which TRL's vLLM path cannot: set use_vllm: false")
    if recipe.setup.reasoning is None and cfg.rl.credit == "reasoning":
        raise ValueError("credit: reasoning credits the reasoning block only, and this recipe answers without one: "
                         "set reasoning: before|native (or credit: all)")
    options = reward_options(cfg)
    setup, dev = recipe.setup, recipe.dev_samples
    model, processor = load_trainable_model(cfg)
    rows = with_ids(setup, recipe.train_samples, cfg.traces.reasoning_col)
    trainer = MediaGRPOTrainer(
        model=model, reward_funcs=[RewardColumn(name, rows, options) for name in options.weights],
        args=grpo_arguments(cfg, out, bool(dev), blocked_tokens(model, processor)),
        train_dataset=rows_dataset(recipe.train_samples), eval_dataset=rows_dataset(dev) if dev else None,
        processing_class=processor, callbacks=callbacks, rows=rows,
        dev_evaluation=dev_evaluation(processor, dev, setup, cfg) if dev else None,
        constraint=answer_constraint(model, processor, cfg) if cfg.rl.constrained else None, credit=cfg.rl.credit)
    return trainer, recipe, processor


def train(cfg: TrainConfig, callbacks: list | None = None) -> Path:
    """Run a GRPO recipe; returns the directory of the final (best-on-dev) adapter; writes `grpo.md`."""
    from mllm_mer.training.grpo_report import write_report
    from mllm_mer.training.sft import dev_metrics, resume_point, save_trained, write_dev_metrics

    trainer, recipe, processor = build_trainer(cfg, callbacks)
    trainer.train(resume_from_checkpoint=resume_point(cfg))
    out = Path(cfg.optim.output_dir)
    adapter_dir = save_trained(trainer, out, recipe)
    if trainer.is_world_process_zero():
        if recipe.dev_samples:
            write_dev_metrics(out, dev_metrics(trainer.model, processor, recipe.dev_samples, recipe.setup, cfg))
        write_report(out, trainer.state.log_history, cfg)
    trainer.accelerator.wait_for_everyone()
    return adapter_dir
