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
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import yaml

from mllm_mer.config import BackendConfig, PromptConfig
from mllm_mer.labels import LabelSpec, load_label_spec
from mllm_mer.media import MediaSettings, load_media
from mllm_mer.models import family_for, resolve_model
from mllm_mer.prompting import Prompt, build_prompt, format_answer, render
from mllm_mer.types import Sample

log = logging.getLogger(__name__)
IGNORE = -100


@dataclass
class TrainConfig:
    """A fine-tuning recipe; finetune/configs/*.yaml are this dataclass serialised."""

    model: str  # base model: hub id or local directory
    output_dir: str  # checkpoints, TensorBoard logs, the final adapter, resolved config, dev metrics
    # data
    dataset: str = "meld"  # any name `mllm-mer evaluate --dataset` takes
    data_dir: str = ""
    train_split: str = "train"
    dev_split: str | None = "dev"  # best checkpoint is chosen here; never on a test split
    dataset_options: dict[str, Any] = field(default_factory=dict)
    labels: str | None = None  # default: the dataset's own label set
    limit_train: int | None = None
    limit_dev: int | None = None
    # prompt (served prompts must use the same template and modalities)
    template: str = "label_only"
    modalities: list[str] = field(default_factory=lambda: ["text", "video", "audio"])
    max_frames: int = 8
    max_pixels: int | None = 448 * 448
    # adapter
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: str | list[str] | None = None  # default: the family's language-model projections
    modules_to_save: list[str] = field(default_factory=list)  # fully trained extra modules (not vLLM-servable)
    allow_vision_lora: bool = False  # vLLM cannot serve LoRA on the vision tower
    quantization: str | None = None  # None | "nf4" (QLoRA, bitsandbytes 4-bit)
    gradient_checkpointing: bool = False
    # optimisation
    epochs: float = 1.0
    max_steps: int = -1
    learning_rate: float = 2e-4
    batch_size: int = 4
    grad_accum: int = 1
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    lr_scheduler: str = "cosine"
    eval_steps: int | None = None  # dev evaluation (and checkpoint) every N steps; None: every epoch
    save_steps: int | None = None
    save_total_limit: int | None = 3
    logging_steps: int = 10
    metric_for_best: str = "macro_f1"  # accuracy | weighted_f1 | macro_f1 | uar, of the first task
    dtype: str = "auto"  # auto: bf16 on GPU, fp32 on CPU
    seed: int = 0
    resume_from_checkpoint: str | bool | None = None  # a checkpoint dir, or true for the latest
    report_to: list[str] = field(default_factory=lambda: ["tensorboard"])

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
        data = yaml.safe_load(Path(path).read_text()) or {}
        for item in overrides or []:
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"override {item!r} is not key=value")
            data[key.strip()] = yaml.safe_load(value)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{path}: unknown keys {unknown}; known: {sorted(known)}")
        return cls(**data)

    def to_yaml(self) -> str:
        return yaml.safe_dump(asdict(self), sort_keys=False)

    def prompt_config(self, spec: LabelSpec) -> PromptConfig:
        return PromptConfig(labels=spec.name, template=self.template, modalities=tuple(self.modalities))

    def media_settings(self) -> MediaSettings:
        return MediaSettings(max_frames=self.max_frames, max_pixels=self.max_pixels)


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


class Collator:
    """Samples -> model inputs: prompt + answer + end of turn, loss on the answer only."""

    def __init__(self, processor: Any, spec: LabelSpec, prompt_cfg: PromptConfig, media: MediaSettings):
        self.processor, self.spec, self.prompt_cfg, self.media = processor, spec, prompt_cfg, media
        self.suffix = answer_suffix(processor)
        self.tokenizer = processor.tokenizer

    def example(self, sample: Sample) -> tuple[Prompt, str]:
        missing = [ls.task for ls in self.spec.label_sets if ls.normalise(str(sample.gold.get(ls.task, ""))) is None]
        if missing:
            raise ValueError(f"sample {sample.id}: gold label missing or outside the set for {missing}")
        gold = {ls.task: ls.normalise(str(sample.gold[ls.task])) for ls in self.spec.label_sets}
        from dataclasses import replace

        sample = replace(sample, gold=gold)
        media = load_media(sample, self.media, self.prompt_cfg.modalities)
        prompt = build_prompt(sample, self.spec, self.prompt_cfg.template, media, self.prompt_cfg.modalities)
        return prompt, target_answer(sample, prompt)

    def __call__(self, samples: list[Sample]) -> dict[str, torch.Tensor]:
        from mllm_mer.backends.hf import processor_inputs

        pairs = [self.example(s) for s in samples]
        prompts = [p for p, _ in pairs]
        texts = [render(self.processor, p) + a + self.suffix for p, a in pairs]
        self.tokenizer.padding_side = "right"
        try:
            batch = processor_inputs(self.processor, prompts, texts)
        finally:
            self.tokenizer.padding_side = "left"
        labels = torch.full_like(batch["input_ids"], IGNORE)
        for row, (_, answer) in enumerate(pairs):
            target = self.tokenizer(answer + self.suffix, add_special_tokens=False)["input_ids"]
            length = int(batch["attention_mask"][row].sum())
            start = length - len(target)
            if batch["input_ids"][row, start:length].tolist() != target:
                raise RuntimeError("answer tokenised differently after the prompt; cannot mask the loss exactly")
            labels[row, start:length] = batch["input_ids"][row, start:length]
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
    from mllm_mer.backends.hf import torch_dtype

    return torch_dtype(cfg.dtype, "cuda" if torch.cuda.is_available() else "cpu")


def lora_targets(cfg: TrainConfig, model: torch.nn.Module) -> str | list[str]:
    """The target modules, refusing vision-tower modules unless explicitly allowed."""
    family = family_for(resolve_model(cfg.model))
    targets = cfg.target_modules or family.lora_target_modules
    if isinstance(targets, str):
        matched = [n for n, _ in model.named_modules() if re.fullmatch(targets, n)]
    else:
        matched = [n for n, _ in model.named_modules() if n.rsplit(".", 1)[-1] in targets]
    if not matched:
        raise ValueError(f"target_modules {targets!r} match no module of {cfg.model}")
    vision = [n for n in matched if family.is_vision_module(n)]
    if vision and not cfg.allow_vision_lora:
        raise ValueError(f"target_modules {targets!r} reach the vision tower ({vision[0]} ...), where vLLM "
                         "cannot apply LoRA; narrow them, or set allow_vision_lora (transformers-only adapters)")
    if vision:
        log.warning("LoRA on %d vision-tower modules: vLLM will not serve this adapter", len(vision))
    return targets


def load_trainable_model(cfg: TrainConfig):
    """A freshly loaded base model (4-bit for QLoRA) with LoRA on it; the vision tower frozen."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    from mllm_mer.backends.hf import load_model_and_processor

    kwargs: dict[str, Any] = {"dtype": _dtype(cfg)}
    if cfg.quantization == "nf4":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=_dtype(cfg))
    elif cfg.quantization:
        raise ValueError(f"quantization must be null or nf4, not {cfg.quantization!r}")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, processor = load_model_and_processor(BackendConfig(model=cfg.model, dtype=cfg.dtype), device, **kwargs)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    if cfg.quantization:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    elif cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=lora_targets(cfg, model), modules_to_save=cfg.modules_to_save or None)
    model = get_peft_model(model, lora)
    if not cfg.quantization:
        model = model.to(device)
    return model, processor


# -- training --------------------------------------------------------------------------------

def _load_samples(cfg: TrainConfig, split: str, limit: int | None) -> tuple[list[Sample], str]:
    from mllm_mer.datasets import load_split

    data = load_split(cfg.dataset, cfg.data_dir, split, **cfg.dataset_options)
    samples = list(data.samples[:limit] if limit else data.samples)
    return samples, data.labels


def dev_metrics(model, processor, samples: list[Sample], spec: LabelSpec, cfg: TrainConfig) -> dict[str, Any]:
    """Dev scores with the evaluate code path (label scoring: one pass per task)."""
    from mllm_mer.backends.hf import TransformersBackend
    from mllm_mer.evaluate import compute_metrics, record_for
    from mllm_mer.pipeline import predict

    backend = TransformersBackend.wrap(model, processor, BackendConfig(model=cfg.model, batch_size=cfg.batch_size))
    prompt_cfg = PromptConfig(**(asdict(cfg.prompt_config(spec)) | {"mode": "score"}))
    was_training = model.training
    model.eval()
    try:
        preds = predict(backend, samples, spec, prompt_cfg, cfg.media_settings())
    finally:
        model.train(was_training)
    return compute_metrics([record_for(s, p) for s, p in zip(samples, preds)], spec, cfg.dataset)


def train(cfg: TrainConfig, callbacks: list | None = None) -> Path:
    """Run a recipe; returns the directory of the final (best-on-dev) adapter.

    `callbacks` are transformers TrainerCallbacks (progress hooks, early stopping).
    """
    from transformers import Trainer, TrainingArguments, set_seed

    set_seed(cfg.seed)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    train_samples, default_labels = _load_samples(cfg, cfg.train_split, cfg.limit_train)
    spec = load_label_spec(cfg.labels or default_labels)
    dev_samples = _load_samples(cfg, cfg.dev_split, cfg.limit_dev)[0] if cfg.dev_split else []
    if cfg.dev_split and cfg.dev_split.startswith("test"):
        raise ValueError("dev_split must not be a test split: the best checkpoint is chosen on it")
    (out / "config.yaml").write_text(cfg.to_yaml())

    model, processor = load_trainable_model(cfg)
    collator = Collator(processor, spec, cfg.prompt_config(spec), cfg.media_settings())
    first_task = spec.label_sets[0].task
    strategy = "steps" if cfg.eval_steps else "epoch"
    args = TrainingArguments(
        output_dir=str(out / "checkpoints"), num_train_epochs=cfg.epochs, max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate, per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum, warmup_steps=cfg.warmup_ratio,  # a float < 1 is a ratio
        weight_decay=cfg.weight_decay,
        lr_scheduler_type=cfg.lr_scheduler, logging_steps=cfg.logging_steps, seed=cfg.seed, data_seed=cfg.seed,
        eval_strategy=strategy if dev_samples else "no", eval_steps=cfg.eval_steps,
        save_strategy="steps" if (cfg.save_steps or cfg.eval_steps) else "epoch",
        save_steps=cfg.save_steps or cfg.eval_steps, save_total_limit=cfg.save_total_limit,
        load_best_model_at_end=bool(dev_samples), metric_for_best_model=f"eval_{cfg.metric_for_best}",
        greater_is_better=True, report_to=cfg.report_to, remove_unused_columns=False,
        bf16=_dtype(cfg) == torch.bfloat16, dataloader_num_workers=0, disable_tqdm=False,
        gradient_checkpointing=False,  # set up above, per model type
    )

    class DevTrainer(Trainer):
        def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
            metrics = dev_metrics(self.model, processor, dev_samples, spec, cfg)
            headline = metrics["tasks"][first_task]
            result = {f"{metric_key_prefix}_{k}": headline[k] for k in ("accuracy", "weighted_f1", "macro_f1", "uar")}
            self.log(result)
            return result

    trainer = DevTrainer(model=model, args=args, train_dataset=SampleList(train_samples),
                         eval_dataset=SampleList(dev_samples) if dev_samples else None, data_collator=collator,
                         callbacks=callbacks)
    trainer.train(resume_from_checkpoint=cfg.resume_from_checkpoint or None)
    adapter_dir = out / "adapter"
    trainer.model.save_pretrained(adapter_dir)
    if dev_samples:
        metrics = dev_metrics(trainer.model, processor, dev_samples, spec, cfg)
        (out / "dev_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return adapter_dir


def merge(model: str, adapter: str, out: str | Path) -> Path:
    """Fold an adapter into the base weights (safetensors) next to the base processor."""
    from peft import PeftModel

    from mllm_mer.backends.hf import load_model_and_processor

    base, processor = load_model_and_processor(BackendConfig(model=model), "cpu")
    merged = PeftModel.from_pretrained(base, adapter).merge_and_unload()
    out = Path(out)
    merged.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    return out
