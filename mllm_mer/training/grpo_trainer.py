"""TRL's GRPOTrainer on our prompt path: the prompts, frames, audio and cues `pipeline.prepare` builds reach
both the sampling and the scored forward passes.

TRL carries only images from message parts; a video's frames or an Omni model's waveform would be dropped
and the model would score completions it generated while seeing the clip against a prompt without it. So
each row of a generation batch keeps the processor's own outputs for its prompt (`PreparedRows`): its token
ids go to generation with the media tensors beside them, and every later forward pass (the loss, the old
and reference log-probabilities) gets that row's media back through one forward pre-hook.
"""
from __future__ import annotations

import contextlib
import copy
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from transformers import Trainer
from trl import GRPOTrainer

from mllm_mer.backends.base import render
from mllm_mer.core.types import Prompt, PromptSetup, Sample
from mllm_mer.stages.prepare import prepare
from mllm_mer.training.grpo_reasoning import extended_fields, reasoned_lead
from mllm_mer.training.rewards import Asked

TEXT_KEYS = ("input_ids", "attention_mask")


@dataclass
class PreparedRows:
    """One training split's samples by id, the prompt each was last prepared into, and what each asked."""

    setup: PromptSetup
    samples: dict[str, Sample]
    asked: dict[str, Asked] = field(default_factory=dict)
    prompts: dict[str, Prompt] = field(default_factory=dict)
    reasoning_col: str | None = None  # the metadata column with each sample's reference reasoning

    def prepare(self, ids: list[str]) -> list[Prompt]:
        """The prompts of these ids (each unique sample prepared once per batch: media decoded once)."""
        unique = [self.samples[i] for i in dict.fromkeys(ids)]
        for sample, ready in zip(unique, prepare(unique, self.setup), strict=True):
            if ready.prompt is None:
                raise ValueError(f"training sample {sample.id}: {ready.error}")
            self.prompts[sample.id] = ready.prompt
            gold = {ls.task: ls.normalise(str(sample.gold.get(ls.task, ""))) for ls in ready.prompt.label_sets}
            reference = sample.metadata.get(self.reasoning_col) if self.reasoning_col else None
            self.asked[sample.id] = Asked(ready.prompt.label_sets, gold, ready.prompt.cue_modalities,
                                          ready.prompt.reasoning, reference if isinstance(reference, str) else None)
        return [self.prompts[i] for i in ids]


def row_inputs(processor: Any, prompt: Prompt) -> tuple[list[int], dict[str, torch.Tensor]]:
    """A prompt's token ids and its media tensors, exactly as the transformers backend builds them."""
    from mllm_mer.backends.hf_loading import processor_inputs

    inputs = processor_inputs(processor, [prompt], [render(processor, prompt)])
    ids = inputs["input_ids"][0].tolist()
    return ids, {k: v for k, v in inputs.items() if k not in TEXT_KEYS}


def _per_token(value: torch.Tensor, length: int) -> bool:
    return value.dim() == 2 and value.shape[0] == 1 and value.shape[1] == length


def merged_media(rows: list[dict[str, Any]], width: int | None = None) -> dict[str, Any]:
    """Rows' media as one batch: tensors concatenated in row order; per-token fields (`mm_token_type_ids`)
    as lists, or, given `width` (prompt + completion columns), placed where each row's prompt ends."""
    out: dict[str, Any] = {}
    for key in rows[0]["media"] if rows else ():
        values = [row["media"][key] for row in rows]
        if not _per_token(values[0], rows[0]["length"]):
            out[key] = torch.cat(values)
        elif width is None:
            out[key] = [v[0].tolist() for v in values]
        else:
            out[key] = torch.stack([_place(v[0], row["prompt_width"], width) for v, row in zip(values, rows,
                                                                                         strict=True)])
    return out


def _place(value: torch.Tensor, prompt_width: int, width: int) -> torch.Tensor:
    """A prompt's per-token field inside a left-padded prompt of `prompt_width` columns, zeros after it."""
    placed = value.new_zeros(width)
    placed[prompt_width - value.shape[0]: prompt_width] = value
    return placed


class MediaGRPOTrainer(GRPOTrainer):
    """GRPOTrainer whose rows carry `sample_id`; prompts come from `rows` (our prepare), not from messages."""

    def __init__(self, *args: Any, rows: PreparedRows, dev_evaluation=None,
                 constraint: Callable[[list[Prompt]], Any] | None = None, credit: str = "all", **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.rows, self.dev_evaluation, self.constraint, self.credit = rows, dev_evaluation, constraint, credit
        self._leads: list[int] = []  # per completion of this batch: its reasoning lead's token count
        self._batch: list[dict[str, Any]] = []  # this generation batch, row by row
        self._active: list[dict[str, Any]] | None = None  # the rows of the forward pass being scored
        self._pending: dict[str, Any] | None = None
        self.model.register_forward_pre_hook(self._inject_media, with_kwargs=True)

    def _inject_media(self, module, args, kwargs):
        if self._pending:
            kwargs = {**kwargs, **self._pending}
        return args, kwargs

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        prompts = self.rows.prepare([x["sample_id"] for x in inputs])
        self._batch = []
        for prompt in prompts:
            ids, media = row_inputs(self.processing_class, prompt)
            self._batch.append({"sample_id": prompt.sample_id, "ids": ids, "media": media, "length": len(ids),
                                "prompt": prompt})
        width = max(row["length"] for row in self._batch)
        for row in self._batch:
            row["prompt_width"] = width  # TRL left-pads every prompt of the batch to the longest
        self._active = self._batch
        started = time.perf_counter()
        output = super()._generate_and_score_completions(inputs)
        # Where a step's time goes: sampling and scoring the group vs the loss's forward and backward.
        self._metrics["train"]["generation_time"].append(time.perf_counter() - started)
        output["media_rows"] = list(self._batch)  # shuffled and split with the batch, row for row
        if self.credit == "reasoning":
            output["tool_mask"] = lead_mask(output["completion_mask"], self._leads)
        return output

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        """Sampling as `predict` decodes: each answer held to its prompt's schema (transformers generation;
        TRL calls the model's `generate` with a config that cannot carry a logits processor). A prompt that
        reasons first writes its block free and bounded, then the constrained answer after it."""
        prompts = [row["prompt"] for row in self._batch]
        turn = functools.partial(super()._generate_single_turn, images=images, num_generations=num_generations,
                                 has_tool_images=has_tool_images)
        if prompts and prompts[0].reasoning is not None:
            return self._think_then_answer(turn, prompts, prompt_ids, multimodal_fields)
        with self._generating(self._answer_kwargs(prompts)):
            return turn(prompt_ids, multimodal_fields=multimodal_fields)

    def _answer_kwargs(self, prompts: list[Prompt]) -> dict[str, Any]:
        return {"logits_processor": [self.constraint(prompts)]} if self.constraint is not None else {}

    def _think_then_answer(self, turn, prompts: list[Prompt], prompt_ids, multimodal_fields):
        """Two passes, as `Backend.think` then the answer: the reasoning block sampled with no grammar until its
        end or its bound; then, after the block's end, the answer under the schema. The completion is both (the
        block as the answer pass read it), so the loss reaches the reasoning."""
        reasoning = prompts[0].reasoning
        tokenizer = self.processing_class.tokenizer
        with self._generating({"tokenizer": tokenizer}, max_new_tokens=reasoning.max_tokens,
                              stop_strings=[reasoning.close]):
            thoughts, _ = turn(prompt_ids, multimodal_fields=multimodal_fields)
        leads = [reasoned_lead(tokenizer, ids, reasoning, self.eos_token_ids) for ids in thoughts]
        self._leads = [len(lead) for lead in leads]
        longer = [ids + lead for ids, lead in zip(prompt_ids, leads, strict=True)]
        with self._generating(self._answer_kwargs(prompts)):
            answers, _ = turn(longer, multimodal_fields=extended_fields(multimodal_fields, leads))
        return [lead + answer for lead, answer in zip(leads, answers, strict=True)], None

    @contextlib.contextmanager
    def _generating(self, kwargs: dict[str, Any], **config: Any):
        """The model's `generate` with these extra arguments, and TRL's generation config with these settings,
        for one call (TRL passes only its own config, which holds no logits processor)."""
        model = self.accelerator.unwrap_model(self.model_wrapped)
        own = model.__dict__.get("generate")  # an instance's own generate (a wrapper) stays in the chain
        saved = self.generation_config
        if config:
            self.generation_config = copy.deepcopy(saved)
            self.generation_config.update(**config)
        if kwargs:
            model.generate = functools.partial(model.generate, **kwargs)
        try:
            yield
        finally:
            self.generation_config = saved
            if kwargs and own is None:
                del model.generate  # the class's own again
            elif kwargs:
                model.generate = own

    def _tokenize_prompts(self, prompts: list):
        if len(prompts) != len(self._batch):
            raise RuntimeError("GRPO batch and prepared rows disagree")
        return [row["ids"] for row in self._batch], None, merged_media(self._batch)

    def _compute_loss(self, model, inputs):
        self._active = inputs["media_rows"]
        return super()._compute_loss(model, inputs)

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep,
                                           batch_size=None, compute_entropy=False, compute_aux_loss=False,
                                           **image_fields):
        rows = self._active or []
        if len(rows) != input_ids.size(0):
            raise RuntimeError(f"{input_ids.size(0)} sequences scored but {len(rows)} prepared rows")
        step = batch_size or input_ids.size(0)
        logps, entropies, aux = [], [], []
        try:
            for start in range(0, input_ids.size(0), step):
                chunk = rows[start:start + step]
                media = merged_media(chunk, width=input_ids.size(1))
                self._pending = {k: v.to(input_ids.device) for k, v in media.items()}
                lp, ent, ax = super()._get_per_token_logps_and_entropies(
                    model, input_ids[start:start + step], attention_mask[start:start + step], logits_to_keep,
                    batch_size=len(chunk), compute_entropy=compute_entropy, compute_aux_loss=compute_aux_loss)
                logps.append(lp)
                entropies.append(ent)
                aux.append(ax)
        finally:
            self._pending = None
        return (torch.cat(logps), torch.cat(entropies) if compute_entropy else None,
                torch.stack(aux).mean() if compute_aux_loss else None)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
        if self.dev_evaluation is None:
            return {}
        return self.dev_evaluation(self, metric_key_prefix)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if any(key.startswith("eval_") for key in logs):  # dev scores alone: TRL would fold the step's metrics in
            Trainer.log(self, logs, start_time)
        else:
            super().log(logs, start_time)


def lead_mask(completion_mask: torch.Tensor, leads: list[int]) -> torch.Tensor:
    """The loss mask (TRL's `tool_mask`) that keeps each completion's reasoning lead and drops its answer; the
    attention mask stays whole, so the answer is still read, only not credited."""
    if len(leads) != completion_mask.size(0):
        raise RuntimeError(f"{completion_mask.size(0)} completions but {len(leads)} reasoning leads")
    positions = torch.arange(completion_mask.size(1), device=completion_mask.device)
    return (positions.unsqueeze(0) < torch.tensor(leads, device=completion_mask.device).unsqueeze(1)).int()


def with_ids(setup: PromptSetup, samples: list[Sample], reasoning_col: str | None = None) -> PreparedRows:
    duplicated = len({s.id for s in samples}) != len(samples)
    if duplicated:
        raise ValueError("GRPO needs unique sample ids in the training split")
    return PreparedRows(replace(setup, mode="generate"), {s.id: s for s in samples}, reasoning_col=reasoning_col)
