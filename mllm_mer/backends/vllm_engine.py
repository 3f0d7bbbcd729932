"""In-process vLLM engine backend (`vllm.LLM`).

Takes the same Prompts as the transformers backend, renders them with the same
chat template, passes frames in the form the model family wants, enforces each
prompt's answer schema with structured outputs, and sends the whole batch in one
`generate` call (vLLM schedules it; prefix caching shares the system prompt).
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

from mllm_mer.config import BackendConfig
from mllm_mer.models import explain_load_error, family_for, resolve_model
from mllm_mer.prompting import Prompt, render


class VLLMEngineBackend:
    name = "vllm"

    def __init__(self, config: BackendConfig):
        from vllm import LLM
        from vllm.lora.request import LoRARequest

        self.config = config
        model_id = resolve_model(config.model)
        self.family = family_for(model_id)
        # The CPU build sizes its KV cache from this variable (GiB); GPU builds ignore it.
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(config.kv_cache_gb))
        self.adapters = {name: LoRARequest(name, i + 1, path) for i, (name, path) in enumerate(config.adapters.items())}
        engine_args: dict[str, Any] = dict(
            model=model_id, dtype="float32" if config.dtype == "auto" and _cpu_only() else config.dtype,
            trust_remote_code=config.trust_remote_code, max_model_len=config.max_model_len,
            enforce_eager=config.enforce_eager, enable_prefix_caching=True, seed=config.seed,
            tensor_parallel_size=config.tensor_parallel_size, gpu_memory_utilization=config.gpu_memory_utilization,
            limit_mm_per_prompt={"image": 1, "video": 1},
            # Per request this flag is ignored; without it a random model emits whitespace until max_tokens.
            structured_outputs_config={"backend": "xgrammar", "disable_any_whitespace": True},
        )
        if config.data_parallel_size > 1:
            engine_args["data_parallel_size"] = config.data_parallel_size
        if self.adapters:
            engine_args.update(enable_lora=True, max_lora_rank=config.max_lora_rank, max_loras=len(self.adapters))
        try:
            self.llm = LLM(**engine_args)
        except OSError as error:
            raise explain_load_error(config.model, error) from error
        self.tokenizer = self.llm.get_tokenizer()

    def register_adapter(self, name: str, path: str) -> None:
        """Make another adapter available to later calls (the engine must have started with LoRA on)."""
        from vllm.lora.request import LoRARequest

        if not self.adapters:
            raise ValueError("this engine was started without adapters, so LoRA is off; pass one at start")
        self.adapters[name] = LoRARequest(name, len(self.adapters) + 1, path)

    def _lora(self, adapter: str | None):
        if adapter is None:
            return None
        if adapter not in self.adapters:
            raise ValueError(f"unknown adapter {adapter!r}; loaded: {', '.join(self.adapters) or 'none'}")
        return self.adapters[adapter]

    def _request(self, prompt: Prompt, text: str) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if prompt.images:
            data["image"] = prompt.images
        if prompt.videos:
            data["video"] = [self.family.video_for_vllm(v, prompt.media.frame_times) for v in prompt.videos]
        request: dict[str, Any] = {"prompt": text}
        if data:
            request["multi_modal_data"] = data
        return request

    def generate(self, prompts: Sequence[Prompt], adapter: str | None = None) -> list[str]:
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        params = [SamplingParams(temperature=0.0, max_tokens=self.config.max_new_tokens,
                                 structured_outputs=StructuredOutputsParams(json=p.schema)) for p in prompts]
        requests = [self._request(p, render(self.tokenizer, p)) for p in prompts]
        outputs = self.llm.generate(requests, params, lora_request=self._lora(adapter), use_tqdm=False)
        return [out.outputs[0].text for out in outputs]

    def generate_token_ids(self, prompts: Sequence[Prompt], adapter: str | None = None,
                           max_new_tokens: int = 16, ignore_eos: bool = False) -> list[list[int]]:
        """Unconstrained greedy token ids (parity checks; fixed-length runs for benchmarks)."""
        from vllm import SamplingParams

        params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens, ignore_eos=ignore_eos)
        requests = [self._request(p, render(self.tokenizer, p)) for p in prompts]
        outputs = self.llm.generate(requests, params, lora_request=self._lora(adapter), use_tqdm=False)
        return [list(out.outputs[0].token_ids) for out in outputs]

    def chat(self, prompt: Prompt, adapter: str | None = None, max_new_tokens: int = 256) -> Iterator[str]:
        """Free-text answer. The offline engine returns it whole (use the server backend for token streaming)."""
        from vllm import SamplingParams

        params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens)
        [out] = self.llm.generate([self._request(prompt, render(self.tokenizer, prompt))], params,
                                  lora_request=self._lora(adapter), use_tqdm=False)
        yield out.outputs[0].text

    def score(self, requests: Sequence[tuple[Prompt, str]], adapter: str | None = None) -> list[float]:
        """Continuation log-likelihoods from one-token decode steps over a trie of continuation tokens.

        Each distinct (prompt, continuation prefix) is one request that asks only for the
        log-probabilities of the tokens that follow it. Unlike prompt log-probabilities, which
        make vLLM bypass its prefix cache, these requests share the cached prompt: scoring N
        labels costs about N short decode steps, not N full prompts.
        """
        from vllm import SamplingParams

        prompt_ids: dict[int, list[int]] = {}
        for prompt, _ in requests:
            if id(prompt) not in prompt_ids:
                prompt_ids[id(prompt)] = self.tokenizer(render(self.tokenizer, prompt),
                                                        add_special_tokens=False)["input_ids"]
        continuations = [self.tokenizer(c, add_special_tokens=False)["input_ids"] for _, c in requests]
        children: dict[tuple[int, tuple[int, ...]], set[int]] = {}
        owner: dict[int, Prompt] = {}
        for (prompt, _), ids in zip(requests, continuations):
            owner[id(prompt)] = prompt
            for i, token in enumerate(ids):
                children.setdefault((id(prompt), tuple(ids[:i])), set()).add(token)
        nodes = list(children)
        batch = []
        for key, prefix in nodes:
            request = self._request(owner[key], "")
            request.pop("prompt")
            request["prompt_token_ids"] = prompt_ids[key] + list(prefix)
            batch.append(request)
        params = [SamplingParams(temperature=0.0, max_tokens=1, logprob_token_ids=sorted(children[n]))
                  for n in nodes]
        outputs = self.llm.generate(batch, params, lora_request=self._lora(adapter), use_tqdm=False)
        logprob = {}
        for node, out in zip(nodes, outputs):
            step = out.outputs[0].logprobs[0]
            for token in children[node]:
                logprob[(node, token)] = step[token].logprob
        return [sum(logprob[((id(prompt), tuple(ids[:i])), token)] for i, token in enumerate(ids))
                for (prompt, _), ids in zip(requests, continuations)]

    def close(self) -> None:
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None:
            engine = getattr(llm, "llm_engine", None)
            shutdown = getattr(engine, "engine_core", None)
            if shutdown is not None and hasattr(shutdown, "shutdown"):
                shutdown.shutdown()


def _cpu_only() -> bool:
    import torch

    return not torch.cuda.is_available()
