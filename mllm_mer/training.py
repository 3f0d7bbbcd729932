"""LoRA / QLoRA fine-tuning on the same Samples and the same prompt path as inference.

Each training example is the inference prompt (rendered by the model's chat template,
media included) followed by the answer in exactly the form constrained decoding
produces; the loss sees only the answer tokens. Dev evaluation uses the pipeline and
the metrics code of `evaluate`, and picks the best checkpoint on the dev split.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from mllm_mer.backends.base import render
from mllm_mer.config import BackendConfig, ModelConfig, TrainConfig
from mllm_mer.models import family_for, resolve_model
from mllm_mer.pipeline import prepare
from mllm_mer.prompting import format_answer
from mllm_mer.types import Prompt, PromptSetup, Sample

log = logging.getLogger(__name__)
IGNORE = -100


# -- examples --------------------------------------------------------------------------------

def target_answer(sample: Sample, prompt: Prompt) -> str:
    answer = {ls.task: sample.gold[ls.task] for ls in prompt.label_sets}
    answer["rationale"] = sample.metadata.get("rationale") or ""
    answer["cues"] = sample.metadata.get("cues") or {}
    return format_answer(answer, prompt.label_sets, prompt.with_rationale)


def answer_suffix(processor: Any) -> str:
    """What the chat template puts after an assistant message (Qwen: '<|im_end|>\\n')."""
    probe = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "ANSWER"}]
    text = processor.apply_chat_template(probe, tokenize=False)
    return text[text.index("ANSWER") + len("ANSWER"):]


@dataclass
class Conversation:
    """An agent's whole conversation as a training example: every assistant turn is a target."""

    prompt: Prompt  # messages include the assistant turns; images are the observations'
    targets: list[int]  # indices of the assistant messages


def scripted_actions(sample: Sample, column: str) -> list[dict[str, Any]]:
    value = sample.metadata.get(column) or []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise ValueError(f"sample {sample.id}: {column!r} is not a JSON list of actions ({error})") from None
    if not isinstance(value, list) or not all(isinstance(a, dict) and "tool" in a for a in value):
        raise ValueError(f"sample {sample.id}: {column!r} must be a list of {{tool, args}} actions")
    return value


class Collator:
    """Samples -> model inputs: prompt + answer + end of turn, loss on the answer only.

    Prompts come from `pipeline.prepare`, exactly as at inference; a sample whose media
    fails or that has nothing to classify is an error naming the sample. With `trace_col`
    (agent training) each sample's scripted actions run through the real tools and the
    whole conversation is the example: loss on every action, observations masked.
    """

    def __init__(self, processor: Any, setup: PromptSetup, toolbox: Any = None, trace_col: str | None = None):
        self.processor, self.setup = processor, setup
        self.suffix = answer_suffix(processor)
        self.tokenizer = processor.tokenizer
        self.toolbox, self.trace_col = toolbox, trace_col

    def _conversation(self, ready: Any, answer: str) -> Conversation:
        from mllm_mer.agent import start
        from mllm_mer.agent.loop import replay
        from mllm_mer.agent.tools import Toolbox

        box = self.toolbox or Toolbox(self.setup)
        actions = scripted_actions(ready.sample, self.trace_col)
        actions = [a for a in actions if a["tool"] != "answer"] + [{"tool": "answer", "args": json.loads(answer)}]
        ep = replay(start(ready.prompt, ready.sample, ready.media, box), box, actions)
        prompt = replace(ready.prompt, messages=ep.messages, observation_images=tuple(ep.images))
        return Conversation(prompt, [i for i, m in enumerate(ep.messages) if m["role"] == "assistant"])

    def examples(self, samples: list[Sample]) -> list[tuple[Prompt, str] | Conversation]:
        scheme = self.setup.scheme
        golds = []
        for sample in samples:
            missing = [ls.task for ls in scheme.label_sets if ls.normalise(str(sample.gold.get(ls.task, ""))) is None]
            if missing:
                raise ValueError(f"sample {sample.id}: gold label missing or outside the set for {missing}")
            golds.append(replace(sample, gold={ls.task: ls.normalise(str(sample.gold[ls.task]))
                                               for ls in scheme.label_sets}))
        pairs = []
        for sample, ready in zip(golds, prepare(golds, self.setup, toolbox=self.toolbox), strict=True):
            if ready.prompt is None:
                raise ValueError(f"training sample {sample.id}: {ready.error}")
            answer = target_answer(sample, ready.prompt)
            pairs.append(self._conversation(ready, answer) if self.trace_col else (ready.prompt, answer))
        return pairs

    def example(self, sample: Sample) -> tuple[Prompt, str]:
        return self.examples([sample])[0]

    def _spans(self, example: tuple[Prompt, str] | Conversation, length: int) -> list[tuple[int, list[int]]]:
        """(first token, token ids) of each target inside a row of `length` tokens."""
        from mllm_mer.hf_loading import processor_inputs

        if not isinstance(example, Conversation):
            target = self.tokenizer(example[1] + self.suffix, add_special_tokens=False)["input_ids"]
            return [(length - len(target), target)]
        spans = []
        prompt = example.prompt
        for index in example.targets:
            # The prefix's length in tokens, media expanded as the processor expands it.
            head = prompt.messages[:index]
            shown = sum(part.get("type") == "image" for m in head if isinstance(m["content"], list)
                        for part in m["content"])
            prefix = replace(prompt, messages=head, observation_images=prompt.observation_images[
                : shown - (prompt.media.image is not None)])
            start = int(processor_inputs(self.processor, [prefix], [render(self.processor, prefix)])["input_ids"]
                        .shape[1])
            spans.append((start, self.tokenizer(prompt.messages[index]["content"] + self.suffix,
                                                add_special_tokens=False)["input_ids"]))
        return spans

    def __call__(self, samples: list[Sample]) -> dict[str, torch.Tensor]:
        from mllm_mer.hf_loading import processor_inputs

        pairs = self.examples(samples)
        prompts = [p.prompt if isinstance(p, Conversation) else p[0] for p in pairs]
        texts = [self.processor.apply_chat_template(p.prompt.messages, tokenize=False) if isinstance(p, Conversation)
                 else render(self.processor, p[0]) + p[1] + self.suffix for p in pairs]
        self.tokenizer.padding_side = "right"
        try:
            batch = processor_inputs(self.processor, prompts, texts)
        finally:
            self.tokenizer.padding_side = "left"
        labels = torch.full_like(batch["input_ids"], IGNORE)
        for row, example in enumerate(pairs):
            length = int(batch["attention_mask"][row].sum())
            for start, target in self._spans(example, length):
                end = start + len(target)
                if batch["input_ids"][row, start:end].tolist() != target:
                    raise RuntimeError("answer tokenised differently after the prompt; cannot mask the loss exactly")
                labels[row, start:end] = batch["input_ids"][row, start:end]
        batch["labels"] = labels
        return dict(batch)


class SampleList(torch.utils.data.Dataset):
    def __init__(self, samples: list[Sample]):
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Sample:
        return self.samples[index]


# -- model -----------------------------------------------------------------------------------

def _dtype(cfg: TrainConfig) -> torch.dtype:
    from mllm_mer.hf_loading import torch_dtype

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

    from mllm_mer.hf_loading import load_model_and_processor

    lora_cfg = cfg.lora
    kwargs: dict[str, Any] = {"dtype": _dtype(cfg)}
    if lora_cfg.quantization == "nf4":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=_dtype(cfg))
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
    lora = LoraConfig(r=lora_cfg.lora_r, lora_alpha=lora_cfg.lora_alpha, lora_dropout=lora_cfg.lora_dropout,
                      target_modules=lora_targets(cfg, model), modules_to_save=lora_cfg.modules_to_save or None)
    model = get_peft_model(model, lora)
    if not lora_cfg.quantization:
        model = model.to(device)
    return model, processor


# -- training --------------------------------------------------------------------------------

def _load_samples(cfg: TrainConfig, split: str, limit: int | None) -> tuple[list[Sample], str]:
    from mllm_mer.datasets import load_split

    data = load_split(cfg.data.dataset, cfg.data.data_dir, split, **cfg.data.loader_options(cfg.prompt.labels))
    samples = list(data.samples[:limit] if limit else data.samples)
    return samples, data.labels


def _toolbox(cfg: TrainConfig, setup: PromptSetup, split: str, samples: list[Sample]):
    """The agent's tools over a split (None for single-pass training)."""
    if setup.strategy != "agent":
        return None
    from mllm_mer.agent.toolbox import build_toolbox
    from mllm_mer.config import RetrievalConfig

    return build_toolbox(setup, RetrievalConfig(retrieve_split=cfg.optim.train_split), cfg.data.dataset,
                         cfg.data.data_dir, split, samples, cfg.data.loader_options(cfg.prompt.labels))


def dev_metrics(model, processor, samples: list[Sample], setup: PromptSetup, cfg: TrainConfig,
                toolbox=None) -> dict[str, Any]:
    """Dev scores with the evaluate code path (label scoring: one pass per task; the agent, when trained)."""
    from mllm_mer.backends.hf import TransformersBackend
    from mllm_mer.evaluate import compute_metrics, record_for
    from mllm_mer.pipeline import predict

    backend = TransformersBackend.wrap(model, processor, BackendConfig(
        model=replace(cfg.model, forward_batch_size=cfg.optim.batch_size)))
    was_training = model.training
    model.eval()
    try:
        preds = predict(backend, samples, replace(setup, mode="score"), toolbox=toolbox)
    finally:
        model.train(was_training)
    records = [record_for(s, p) for s, p in zip(samples, preds, strict=True)]
    return compute_metrics(records, setup.scheme, cfg.data.dataset)


def train(cfg: TrainConfig, callbacks: list | None = None) -> Path:
    """Run a recipe; returns the directory of the final (best-on-dev) adapter.

    `callbacks` are transformers TrainerCallbacks (progress hooks, early stopping).
    The adapter directory also holds the resolved prompt (`prompt.yaml`, label file),
    so `--adapter DIR` serves it with the prompt it was trained on.
    """
    from transformers import Trainer, TrainingArguments, set_seed

    from mllm_mer.resolve import resolve_prompt, save_adapter_prompt

    opt = cfg.optim
    if not opt.output_dir:
        raise ValueError("the recipe needs output_dir")
    if not (cfg.data.dataset and cfg.data.data_dir):
        raise ValueError("the recipe needs dataset and data_dir")
    if opt.dev_split and opt.dev_split.startswith("test"):
        raise ValueError("dev_split must not be a test split: the best checkpoint is chosen on it")
    set_seed(cfg.model.seed)
    out = Path(opt.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    train_samples, default_labels = _load_samples(cfg, opt.train_split, opt.limit_train)
    setup = resolve_prompt(cfg.model, cfg.prompt, cfg.media, default_labels=default_labels,
                           default_template="label_only", strategy=cfg.traces.strategy())
    dev_samples = _load_samples(cfg, opt.dev_split, opt.limit_dev)[0] if opt.dev_split else []
    (out / "config.yaml").write_text(cfg.to_yaml())

    model, processor = load_trainable_model(cfg)
    toolbox = _toolbox(cfg, setup, opt.train_split, train_samples)
    dev_toolbox = _toolbox(cfg, setup, opt.dev_split, dev_samples) if dev_samples else None
    collator = Collator(processor, setup, toolbox, cfg.traces.trace_col)
    first_task = setup.scheme.label_sets[0].task
    strategy = "steps" if opt.eval_steps else "epoch"
    args = TrainingArguments(
        output_dir=str(out / "checkpoints"), num_train_epochs=opt.epochs, max_steps=opt.max_steps,
        learning_rate=opt.learning_rate, per_device_train_batch_size=opt.batch_size,
        gradient_accumulation_steps=opt.grad_accum, warmup_steps=opt.warmup_ratio,  # a float < 1 is a ratio
        weight_decay=opt.weight_decay,
        lr_scheduler_type=opt.lr_scheduler, logging_steps=opt.logging_steps, seed=cfg.model.seed,
        data_seed=cfg.model.seed,
        eval_strategy=strategy if dev_samples else "no", eval_steps=opt.eval_steps,
        save_strategy="steps" if (opt.save_steps or opt.eval_steps) else "epoch",
        save_steps=opt.save_steps or opt.eval_steps, save_total_limit=opt.save_total_limit,
        load_best_model_at_end=bool(dev_samples), metric_for_best_model=f"eval_{opt.metric_for_best}",
        greater_is_better=True, report_to=opt.report_to, remove_unused_columns=False,
        bf16=_dtype(cfg) == torch.bfloat16, dataloader_num_workers=0, disable_tqdm=False,
        gradient_checkpointing=False,  # set up above, per model type
        # On CPU, say so: under a multi-process launcher this makes the run DDP over gloo (MULTI_CPU).
        use_cpu=not torch.cuda.is_available(),
    )

    class DevTrainer(Trainer):
        def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
            metrics = dev_metrics(self.model, processor, dev_samples, setup, cfg, dev_toolbox)
            headline = metrics["tasks"][first_task]
            result = {f"{metric_key_prefix}_{k}": headline[k] for k in ("accuracy", "weighted_f1", "macro_f1", "uar")}
            self.log(result)
            return result

    trainer = DevTrainer(model=model, args=args, train_dataset=SampleList(train_samples),
                         eval_dataset=SampleList(dev_samples) if dev_samples else None, data_collator=collator,
                         callbacks=callbacks)
    resume = opt.resume_from_checkpoint
    trainer.train(resume_from_checkpoint=(resume in (True, "true", "True")) or resume or None)
    adapter_dir = out / "adapter"
    # Under DDP every process holds the same weights; under FSDP they are sharded, and every process
    # takes part in gathering them (peft cannot read sharded tensors). One process writes them.
    sharded = trainer.is_fsdp_enabled
    state = trainer.accelerator.get_state_dict(trainer.model) if sharded else None
    if trainer.is_world_process_zero():
        trainer.accelerator.unwrap_model(trainer.model).save_pretrained(adapter_dir, state_dict=state)
        save_adapter_prompt(adapter_dir, setup)
        if dev_samples and sharded and args.world_size > 1:
            print("dev metrics skipped under multi-process FSDP (a sharded model answers only with every process); "
                  f"run `mllm-mer evaluate --adapter {adapter_dir}`")
        elif dev_samples:
            metrics = dev_metrics(trainer.model, processor, dev_samples, setup, cfg, dev_toolbox)
            (out / "dev_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    trainer.accelerator.wait_for_everyone()
    return adapter_dir


def merge(model: str, adapter: str, out: str | Path) -> Path:
    """Fold an adapter into the base weights (safetensors) next to the base processor."""
    from peft import PeftModel

    from mllm_mer.hf_loading import load_model_and_processor

    base, processor = load_model_and_processor(ModelConfig(model=model), "cpu")
    merged = PeftModel.from_pretrained(base, adapter).merge_and_unload()
    out = Path(out)
    merged.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    return out
