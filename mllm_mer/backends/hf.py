"""transformers backend: AutoModelForImageTextToText + AutoProcessor, optional PEFT adapters.

Generation is batched and constrained to each prompt's JSON schema by xgrammar, the
grammar engine vLLM uses too, so both backends can only emit labels of the set.
"""
from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from mllm_mer.backends.base import BackendBase, answer_start, render
from mllm_mer.backends.hf_loading import load_model_and_processor, processor_inputs, with_adapters
from mllm_mer.backends.label_scoring import constrained_logprobs, reading_paths
from mllm_mer.config import BackendConfig
from mllm_mer.core.types import Prompt, Reasoning, Thought
from mllm_mer.prompting.opening import answer_opening


class TransformersBackend(BackendBase):
    name = "transformers"

    def __init__(self, config: BackendConfig, device: str | None = None):
        self.config = config
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        model, processor = load_model_and_processor(config.model, self.device)
        self.adapters = dict(config.model.adapters)
        if self.adapters:
            model = with_adapters(model, self.adapters, config.model.model)
        self._attach(model.to(self.device).eval(), processor)

    @classmethod
    def wrap(cls, model: Any, processor: Any, config: BackendConfig) -> TransformersBackend:
        """A backend over a model already in memory (e.g. one being trained), as it is."""
        self = cls.__new__(cls)
        self.config = config
        self.device = str(next(model.parameters()).device)
        self.adapters = {}
        self._attach(model, processor)
        return self

    def _attach(self, model: Any, processor: Any) -> None:
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self._grammar_compiler = None
        self._grammars: dict[str, Any] = {}

    # -- adapters ---------------------------------------------------------------------------
    def _adapter_context(self, adapter: str | None):
        import contextlib

        if not self.adapters:
            if adapter:
                raise ValueError(f"adapter {adapter!r} requested, but none was loaded")
            return contextlib.nullcontext()
        if adapter is None:
            return self.model.disable_adapter()
        if adapter not in self.adapters:
            raise ValueError(f"unknown adapter {adapter!r}; loaded: {', '.join(self.adapters)}")
        self.model.set_adapter(adapter)
        return contextlib.nullcontext()

    def _eos_ids(self) -> set[int]:
        eos = self.model.generation_config.eos_token_id
        ids = set(eos) if isinstance(eos, list) else {eos} if eos is not None else set()
        return ids | ({self.tokenizer.eos_token_id} if self.tokenizer.eos_token_id is not None else set())

    # -- constrained generation -------------------------------------------------------------
    def _compiled_grammar(self, prompt: Prompt, opened: bool = True):
        """The compiled constraint of one answer: its schema, or (`opened`: its prompt ends with the answer's
        opening, as `answer_start` writes it) the grammar of the rest after its opening."""
        opening = answer_opening(prompt) if opened else None
        key = opening.grammar if opening else json.dumps(prompt.schema)  # key order is the answer order
        if key not in self._grammars:
            compiler = self._compiler()
            # Compact separators: the same answer form vLLM produces with disable_any_whitespace.
            self._grammars[key] = compiler.compile_grammar(key) if opening else \
                compiler.compile_json_schema(key, any_whitespace=False, separators=(",", ":"))
        return self._grammars[key]

    def _compiler(self):
        if self._grammar_compiler is None:
            import xgrammar as xgr

            vocab = self.model.config.get_text_config().vocab_size
            # Every end-of-sequence id is a stop token: otherwise the grammar would take e.g.
            # <|endoftext|> as literal text inside a string, and generation would end mid-answer.
            stops = sorted(self._eos_ids())
            info = xgr.TokenizerInfo.from_huggingface(self.tokenizer, vocab_size=vocab, stop_token_ids=stops)
            self._grammar_compiler = xgr.GrammarCompiler(info)
        return self._grammar_compiler

    def constraint(self, prompts: Sequence[Prompt], opened: bool = True):
        """A logits processor that holds each row of one `generate` call to its prompt's answer schema (one
        row per prompt, in order; a new one per call: it keeps each row's place in its grammar); `opened`: the
        rows continue `answer_start` (after the answer's opening), else the plain rendered prompt."""
        from xgrammar.contrib.hf import LogitsProcessor

        return LogitsProcessor([self._compiled_grammar(p, opened) for p in prompts])

    @torch.inference_mode()
    def generate(self, prompts: Sequence[Prompt], adapter: str | None = None, temperature: float = 0.0,
                 seeds: Sequence[int] | None = None) -> list[str]:
        sampling: dict[str, Any] = {"do_sample": False}
        if temperature > 0:
            # One generator for the batch: rows of one batch draw differently, and the first seed
            # makes the whole call repeatable.
            torch.manual_seed(seeds[0] if seeds else self.config.model.seed)
            sampling = {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0}

        answers: list[str] = []
        for start in range(0, len(prompts), self.config.model.forward_batch_size):
            batch = prompts[start:start + self.config.model.forward_batch_size]
            starts = [answer_start(self.processor, p) for p in batch]
            inputs = self._fitting(batch, [text for text, _ in starts], self.config.model.max_new_tokens)
            with self._adapter_context(adapter):
                out = self.model.generate(**inputs, max_new_tokens=self.config.model.max_new_tokens,
                                          logits_processor=[self.constraint(batch)], **sampling)
            new_tokens = out[:, inputs["input_ids"].shape[1]:]
            answers += [(opening.text if opening else "") + text for (_, opening), text
                        in zip(starts, self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True), strict=True)]
        return answers

    @torch.inference_mode()
    def think(self, prompts: Sequence[Prompt], adapter: str | None = None, temperature: float = 0.0,
              seeds: Sequence[int] | None = None) -> list[Thought]:
        """Each prompt's reasoning block, unconstrained (no grammar), until its end or its token bound."""
        from mllm_mer.backends.base import thought_of

        sampling: dict[str, Any] = {"do_sample": False}
        if temperature > 0:
            torch.manual_seed(seeds[0] if seeds else self.config.model.seed)
            sampling = {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0}
        thoughts: list[Thought] = []
        size = self.config.model.forward_batch_size
        for start in range(0, len(prompts), size):
            batch = prompts[start:start + size]
            bound = max(p.reasoning.max_tokens for p in batch)
            inputs = self._fitting(batch, [render(self.processor, p) for p in batch], bound)
            closes = sorted({p.reasoning.close for p in batch})
            with self._adapter_context(adapter):
                out = self.model.generate(**inputs, max_new_tokens=bound, stop_strings=closes,
                                          tokenizer=self.tokenizer, **sampling)
            for prompt, row in zip(batch, out[:, inputs["input_ids"].shape[1]:].tolist(), strict=True):
                ids = self._until_stop(row, prompt.reasoning)
                thoughts.append(thought_of(self.tokenizer.decode(ids, skip_special_tokens=True), len(ids),
                                           prompt.reasoning))
        return thoughts

    def _until_stop(self, row: list[int], reasoning: Reasoning) -> list[int]:
        """A generated row up to the token that ends the block (or the sequence), at most the bound: a
        finished row of a batch is padded after its end, and other rows' ends stop it too."""
        eos, ids = self._eos_ids(), []
        for token in row[:reasoning.max_tokens]:
            ids.append(token)
            if token in eos or reasoning.close in self.tokenizer.decode(ids[-64:], skip_special_tokens=True):
                break
        return ids

    def _fitting(self, prompts: Sequence[Prompt], texts: Sequence[str], answer_tokens: int):
        """The batch's model inputs; a prompt that cannot fit the model's context with its answer is refused
        (ValueError: the pipeline isolates it and fails that sample alone, as vLLM's length check does)."""
        inputs = processor_inputs(self.processor, prompts, texts)
        context = getattr(self.model.config.get_text_config(), "max_position_embeddings", None)
        mask = inputs.get("attention_mask")
        lengths = mask.sum(dim=1).tolist() if mask is not None else [inputs["input_ids"].shape[1]] * len(texts)
        if context and max(lengths) + answer_tokens > context:
            raise ValueError(f"the prompt is {int(max(lengths))} tokens; with {answer_tokens} answer tokens it is "
                             f"over the model's context of {context}")
        return inputs.to(self.device)

    def generate_token_ids(self, prompts: Sequence[Prompt], adapter: str | None = None,
                           max_new_tokens: int = 16, ignore_eos: bool = False) -> list[list[int]]:
        """Unconstrained greedy token ids (parity checks; fixed-length runs for benchmarks)."""
        with torch.inference_mode():
            inputs = processor_inputs(self.processor, prompts, [render(self.processor, p) for p in prompts])
            inputs = inputs.to(self.device)
            with self._adapter_context(adapter):
                out = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                          min_new_tokens=max_new_tokens if ignore_eos else 0)
        eos = self._eos_ids()
        result = []
        for row in out[:, inputs["input_ids"].shape[1]:].tolist():
            ids = []
            for token in row:
                ids.append(token)
                if token in eos and not ignore_eos:
                    break
            result.append(ids)
        return result

    def chat(self, prompt: Prompt, adapter: str | None = None, max_new_tokens: int = 256) -> Iterator[str]:
        """Free-text answer, streamed as it is generated (accumulated text so far)."""
        from threading import Thread

        from transformers import TextIteratorStreamer

        inputs = processor_inputs(self.processor, [prompt], [render(self.processor, prompt)]).to(self.device)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        context = self._adapter_context(adapter)

        def run():
            with torch.inference_mode(), context:
                self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, streamer=streamer)

        thread = Thread(target=run, daemon=True)
        thread.start()
        text = ""
        for piece in streamer:
            text += piece
            yield text
        thread.join()

    # -- scoring ----------------------------------------------------------------------------
    @torch.inference_mode()
    def score(self, requests: Sequence[tuple[Prompt, Sequence[str]]],
              adapter: str | None = None) -> list[list[float]]:
        """One forward pass per reading path (usually one per prompt), read at its branch points."""
        candidates = [[self.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
                      for _, texts in requests]
        walks = [(i, walk) for i, ids in enumerate(candidates) for walk in reading_paths(ids)]
        readings: list[dict] = [{} for _ in requests]
        for start in range(0, len(walks), self.config.model.forward_batch_size):
            batch = walks[start:start + self.config.model.forward_batch_size]
            prompts = [requests[i][0] for i, _ in batch]
            texts = [render(self.processor, requests[i][0]) + requests[i][1][walk.candidate] for i, walk in batch]
            inputs = self._fitting(prompts, texts, 0)
            with self._adapter_context(adapter):
                logits = self.model(**inputs).logits
            for row, (i, walk) in enumerate(batch):
                n = len(walk.path)
                # Left padding: the walked candidate is the last n tokens of every row.
                if inputs["input_ids"][row, -n:].tolist() != list(walk.path):
                    raise RuntimeError("continuation tokenised differently inside the prompt; "
                                       "cannot score it exactly")
                for depth in walk.reads:
                    # The logits at a prefix's last token are the distribution after it.
                    logprobs = torch.log_softmax(logits[row, depth - n - 1].float(), dim=-1)
                    readings[i][walk.path[:depth]] = {t: float(logprobs[t]) for t in walk.tokens}
        return [constrained_logprobs(ids, r) for ids, r in zip(candidates, readings, strict=True)]

    def close(self) -> None:
        self.model = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
