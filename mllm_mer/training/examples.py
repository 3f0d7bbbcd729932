"""Training examples on the inference prompt path: each is the prompt `pipeline.prepare` builds, then the
answer in exactly the form constrained decoding produces; the loss sees only the answer tokens (every
action, observations masked, for an agent's scripted traces)."""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

import torch

from mllm_mer.backends.base import render
from mllm_mer.core.types import Prompt, PromptSetup, Sample
from mllm_mer.prompting import format_answer
from mllm_mer.stages.prepare import prepare
from mllm_mer.stages.resources import Resources
from mllm_mer.strategies.agent import Agent

IGNORE = -100


def target_answer(sample: Sample, prompt: Prompt, reasoning_col: str | None = None) -> str:
    """The answer as constrained decoding writes it; a prompt that reasons first is trained on the sample's
    reasoning (`reasoning_col`) and the block's end before it, as `render` continues the block's opening."""
    answer = {ls.task: sample.gold[ls.task] for ls in prompt.label_sets}
    answer["rationale"] = sample.metadata.get("rationale") or ""
    answer["cues"] = sample.metadata.get("cues") or {}
    text = format_answer(answer, prompt.label_sets, prompt.with_rationale, prompt.cue_modalities)
    if prompt.reasoning is None:
        return text
    thought = sample.metadata.get(reasoning_col) if reasoning_col else None
    if not isinstance(thought, str) or not thought.strip():
        raise ValueError(f"sample {sample.id}: no reasoning text in column {reasoning_col!r}")
    return thought.strip() + prompt.reasoning.close + prompt.reasoning.after + text


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
    """Samples -> model inputs: prompt + answer + end of turn, loss on the answer only (and on the reasoning
    before it, for a prompt that reasons first: `reasoning_col`).

    Prompts come from `pipeline.prepare`, exactly as at inference; a sample whose media
    fails or that has nothing to classify is an error naming the sample. With `trace_col`
    (agent training) each sample's scripted actions run through the real tools and the
    whole conversation is the example: loss on every action, observations masked.
    """

    def __init__(self, processor: Any, setup: PromptSetup, resources: Resources | None = None,
                 trace_col: str | None = None, agent: Agent | None = None, reasoning_col: str | None = None):
        self.processor, self.setup = processor, setup
        self.suffix = answer_suffix(processor)
        self.tokenizer = processor.tokenizer
        self.resources, self.trace_col, self.agent = resources, trace_col, agent
        self.reasoning_col = reasoning_col

    def _conversation(self, ready: Any, answer: str) -> Conversation:
        from mllm_mer.strategies.agent import start
        from mllm_mer.strategies.agent.loop import replay

        box = (self.agent or Agent()).toolbox(self.setup, self.resources)
        actions = scripted_actions(ready.sample, self.trace_col)
        actions = [a for a in actions if a["tool"] != "answer"] + [{"tool": "answer", "args": json.loads(answer)}]
        ep = replay(start(ready.prompt, ready.sample, ready.media, box), box, actions)
        prompt = replace(ready.prompt, messages=ep.messages, observation_images=tuple(ep.images),
                         observation_audios=tuple(ep.audios))
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
        for sample, ready in zip(golds, prepare(golds, self.setup, resources=self.resources), strict=True):
            if ready.prompt is None:
                raise ValueError(f"training sample {sample.id}: {ready.error}")
            answer = target_answer(sample, ready.prompt, self.reasoning_col)
            pairs.append(self._conversation(ready, answer) if self.trace_col else (ready.prompt, answer))
        return pairs

    def example(self, sample: Sample) -> tuple[Prompt, str]:
        return self.examples([sample])[0]

    def _spans(self, example: tuple[Prompt, str] | Conversation, length: int) -> list[tuple[int, list[int]]]:
        """(first token, token ids) of each target inside a row of `length` tokens."""
        from mllm_mer.backends.hf_loading import processor_inputs

        if not isinstance(example, Conversation):
            target = self.tokenizer(example[1] + self.suffix, add_special_tokens=False)["input_ids"]
            return [(length - len(target), target)]
        spans = []
        prompt = example.prompt
        for index in example.targets:
            # The prefix's length in tokens, media expanded as the processor expands it.
            head = prompt.messages[:index]
            parts = [part.get("type") for m in head if isinstance(m["content"], list) for part in m["content"]]
            prefix = replace(prompt, messages=head, observation_images=prompt.observation_images[
                : parts.count("image") - (prompt.media.image is not None)], observation_audios=prompt.
                observation_audios[: parts.count("audio") - (prompt.media.audio is not None)])
            start = int(processor_inputs(self.processor, [prefix], [render(self.processor, prefix)])["input_ids"]
                        .shape[1])
            spans.append((start, self.tokenizer(prompt.messages[index]["content"] + self.suffix,
                                                add_special_tokens=False)["input_ids"]))
        return spans

    def __call__(self, samples: list[Sample]) -> dict[str, torch.Tensor]:
        from mllm_mer.backends.hf_loading import processor_inputs

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
