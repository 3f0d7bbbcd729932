"""LoRA / QLoRA fine-tuning on the same Samples and the same prompt path as inference.

Each training example is the inference prompt (rendered by the model's chat template,
media included) followed by the answer in exactly the form constrained decoding
produces (`examples`); the loss sees only the answer tokens. Dev evaluation uses the
pipeline and the metrics code of `evaluate`, and picks the best checkpoint on the dev split.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from mllm_mer.config import BackendConfig, RetrievalConfig, TrainConfig
from mllm_mer.core.types import PromptSetup, Sample
from mllm_mer.datasets import load_configured, loader_options
from mllm_mer.pipeline.build import Source, run_resources
from mllm_mer.stages.resources import Resources
from mllm_mer.strategies.agent import Agent
from mllm_mer.training.examples import Collator, SampleList
from mllm_mer.training.model import load_trainable_model, train_dtype

log = logging.getLogger(__name__)


def _load_samples(cfg: TrainConfig, split: str, limit: int | None) -> tuple[list[Sample], str]:
    data = load_configured(cfg.data, split, cfg.prompt.labels)
    samples = list(data.samples[:limit] if limit else data.samples)
    return samples, data.labels


def agent_strategy(cfg: TrainConfig) -> Agent | None:
    """The agent the recipe trains on scripted traces (None: single-pass training)."""
    if not cfg.traces.trace_col:
        return None
    return Agent(cfg.agent.max_steps, tuple(cfg.agent.tools), cfg.agent.look_frames)


def training_resources(cfg: TrainConfig, setup: PromptSetup, agent: Agent | None, split: str,
                       samples: list[Sample]) -> Resources | None:
    """What the agent's tools read over a split (None for single-pass training)."""
    if agent is None:
        return None
    source = Source(cfg.data.dataset, cfg.data.data_dir, split, loader_options(cfg.data, cfg.prompt.labels))
    return run_resources(setup, agent, RetrievalConfig(retrieve_split=cfg.optim.train_split), samples, source)


def dev_metrics(model, processor, samples: list[Sample], setup: PromptSetup, cfg: TrainConfig,
                agent: Agent | None = None, resources: Resources | None = None) -> dict[str, Any]:
    """Dev scores with the evaluate code path (label scoring: one pass per task; the agent, when trained)."""
    from mllm_mer.backends.hf import TransformersBackend
    from mllm_mer.evaluation.runner import compute_metrics, record_for
    from mllm_mer.pipeline.answer import predict

    backend = TransformersBackend.wrap(model, processor, BackendConfig(
        model=replace(cfg.model, forward_batch_size=cfg.optim.batch_size)))
    was_training = model.training
    model.eval()
    try:
        preds = predict(backend, samples, replace(setup, mode="score"), strategy=agent, resources=resources)
    finally:
        model.train(was_training)
    records = [record_for(s, p) for s, p in zip(samples, preds, strict=True)]
    return compute_metrics(records, setup.scheme, cfg.data.dataset)


def training_arguments(cfg: TrainConfig, out: Path, with_dev: bool, kind: type | None = None, **extra: Any):
    """transformers TrainingArguments (or `kind`, a subclass such as TRL's GRPOConfig, with `extra`) from the
    recipe's optimisation section."""
    from transformers import TrainingArguments

    opt = cfg.optim
    evaluation = "steps" if opt.eval_steps else "epoch"
    return (kind or TrainingArguments)(
        output_dir=str(out / "checkpoints"), num_train_epochs=opt.epochs, max_steps=opt.max_steps,
        learning_rate=opt.learning_rate, per_device_train_batch_size=opt.batch_size,
        gradient_accumulation_steps=opt.grad_accum, warmup_steps=opt.warmup_ratio,  # a float < 1 is a ratio
        weight_decay=opt.weight_decay,
        lr_scheduler_type=opt.lr_scheduler, logging_steps=opt.logging_steps, seed=cfg.model.seed,
        data_seed=cfg.model.seed,
        eval_strategy=evaluation if with_dev else "no", eval_steps=opt.eval_steps,
        save_strategy="steps" if (opt.save_steps or opt.eval_steps) else "epoch",
        save_steps=opt.save_steps or opt.eval_steps, save_total_limit=opt.save_total_limit,
        load_best_model_at_end=with_dev, metric_for_best_model=f"eval_{opt.metric_for_best}",
        greater_is_better=True, report_to=opt.report_to, remove_unused_columns=False,
        bf16=train_dtype(cfg) == torch.bfloat16, dataloader_num_workers=0, disable_tqdm=False,
        gradient_checkpointing=False,  # set up above, per model type
        # On CPU, say so: under a multi-process launcher this makes the run DDP over gloo (MULTI_CPU).
        use_cpu=not torch.cuda.is_available(), **extra,
    )


def dev_evaluation(processor, samples: list[Sample], setup: PromptSetup, cfg: TrainConfig,
                   agent: Agent | None = None, resources: Resources | None = None):
    """A trainer's `evaluate`: the dev headline of the first task, logged, and seen by the callbacks."""
    first_task = setup.scheme.label_sets[0].task

    def evaluate(trainer, metric_key_prefix: str = "eval") -> dict[str, float]:
        metrics = dev_metrics(trainer.model, processor, samples, setup, cfg, agent, resources)
        headline = metrics["tasks"][first_task]
        result = {f"{metric_key_prefix}_{k}": headline[k] for k in ("accuracy", "weighted_f1", "macro_f1", "uar")}
        trainer.log(result)
        # As Trainer.evaluate does: callbacks (early stopping) see the metrics, and the pending
        # evaluation is cleared (left set, the epoch's end evaluated the same step again).
        trainer.control = trainer.callback_handler.on_evaluate(trainer.args, trainer.state, trainer.control, result)
        return result

    return evaluate


@dataclass
class Recipe:
    """A recipe made ready: its resolved prompt, the agent it trains (if any), and its samples."""

    setup: PromptSetup
    agent: Agent | None
    train_samples: list[Sample]
    dev_samples: list[Sample]
    model: str  # the base model's id or folder


def ready_recipe(cfg: TrainConfig, out: Path) -> Recipe:
    from transformers import set_seed

    from mllm_mer.pipeline.build import prompt_setup

    opt = cfg.optim
    if not (cfg.data.dataset and cfg.data.data_dir):
        raise ValueError("the recipe needs dataset and data_dir")
    if opt.dev_split and opt.dev_split.startswith("test"):
        raise ValueError("dev_split must not be a test split: the best checkpoint is chosen on it")
    set_seed(cfg.model.seed)
    out.mkdir(parents=True, exist_ok=True)
    train_samples, default_labels = _load_samples(cfg, opt.train_split, opt.limit_train)
    # An adapter trained further brings its prompt, as it would to `predict`.
    prompt_model = replace(cfg.model, adapter=[f"init={cfg.lora.init_adapter}"]) if cfg.lora.init_adapter else cfg.model
    setup = prompt_setup(replace(cfg, model=prompt_model), default_labels, default_template="label_only")
    check_reasoning_targets(cfg, setup)
    dev_samples = _load_samples(cfg, opt.dev_split, opt.limit_dev)[0] if opt.dev_split else []
    (out / "config.yaml").write_text(cfg.to_yaml())
    return Recipe(setup, agent_strategy(cfg), train_samples, dev_samples, cfg.model.model)


def check_reasoning_targets(cfg: TrainConfig, setup: PromptSetup) -> None:
    """A recipe that reasons first needs reasoning text to train on, and reasoning text needs an order."""
    col, order = cfg.traces.reasoning_col, setup.reasoning.order if setup.reasoning else "none"
    if col and order == "none":  # the same recipe as an ablation: the answer alone, in one step
        print(f"reasoning_col {col!r} unused: with reasoning none the answer is trained alone", flush=True)
    if order != "none" and cfg.optim.method == "sft" and not col:
        raise ValueError(f"reasoning: {order} trains the reasoning block before each answer: name the manifest "
                         "column that holds it (reasoning_col, --reasoning-col)")
    if order != "none" and cfg.traces.trace_col:
        raise ValueError("the agent does not reason between its steps yet: train traces (trace_col) with reasoning: "
                         "none")


def train(cfg: TrainConfig, callbacks: list | None = None) -> Path:
    """Run a recipe; returns the directory of the final (best-on-dev) adapter.

    `callbacks` are transformers TrainerCallbacks (progress hooks, early stopping).
    The adapter directory also holds the resolved prompt (`prompt.yaml`, label file),
    so `--adapter DIR` serves it with the prompt it was trained on.
    """
    from transformers import Trainer

    if not cfg.optim.output_dir:
        raise ValueError("the recipe needs output_dir")
    out = Path(cfg.optim.output_dir)
    recipe = ready_recipe(cfg, out)
    setup, agent, dev_samples = recipe.setup, recipe.agent, recipe.dev_samples
    model, processor = load_trainable_model(cfg)
    resources = training_resources(cfg, setup, agent, cfg.optim.train_split, recipe.train_samples)
    dev_resources = training_resources(cfg, setup, agent, cfg.optim.dev_split, dev_samples) if dev_samples else None
    collator = Collator(processor, setup, resources, cfg.traces.trace_col, agent, cfg.traces.reasoning_col)
    args = training_arguments(cfg, out, bool(dev_samples))
    on_dev = dev_evaluation(processor, dev_samples, setup, cfg, agent, dev_resources)

    class DevTrainer(Trainer):
        def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
            return on_dev(self, metric_key_prefix)

    trainer = DevTrainer(model=model, args=args, train_dataset=SampleList(recipe.train_samples),
                         eval_dataset=SampleList(dev_samples) if dev_samples else None, data_collator=collator,
                         callbacks=callbacks)
    trainer.train(resume_from_checkpoint=resume_point(cfg))
    adapter_dir = save_trained(trainer, out, recipe)
    if dev_samples and trainer.is_world_process_zero() and not (trainer.is_fsdp_enabled and args.world_size > 1):
        write_dev_metrics(out, dev_metrics(trainer.model, processor, dev_samples, setup, cfg, agent, dev_resources))
    trainer.accelerator.wait_for_everyone()
    return adapter_dir


def resume_point(cfg: TrainConfig) -> str | bool | None:
    resume = cfg.optim.resume_from_checkpoint
    return (resume in (True, "true", "True")) or resume or None


def write_dev_metrics(out: Path, metrics: dict[str, Any]) -> None:
    (out / "dev_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")


def save_trained(trainer, out: Path, recipe: Recipe) -> Path:
    """The final adapter with its prompt beside it (one process writes it)."""
    from mllm_mer.backends.hf_loading import name_adapter_as_checkpoint
    from mllm_mer.pipeline.adapter_prompt import save_adapter_prompt

    adapter_dir = out / "adapter"
    # Under DDP every process holds the same weights; under FSDP they are sharded, and every process
    # takes part in gathering them (peft cannot read sharded tensors).
    sharded = trainer.is_fsdp_enabled
    state = trainer.accelerator.get_state_dict(trainer.model) if sharded else None
    if trainer.is_world_process_zero():
        trainer.accelerator.unwrap_model(trainer.model).save_pretrained(adapter_dir, state_dict=state)
        name_adapter_as_checkpoint(adapter_dir, recipe.model)
        save_adapter_prompt(adapter_dir, recipe.setup, recipe.agent)
        if recipe.dev_samples and sharded and trainer.args.world_size > 1:
            print("dev metrics skipped under multi-process FSDP (a sharded model answers only with every process); "
                  f"run `mllm-mer evaluate --adapter {adapter_dir}`")
    return adapter_dir


