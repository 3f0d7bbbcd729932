"""In-process vLLM engine backend (`vllm.LLM`).

Takes the same Prompts as the transformers backend, renders them with the same
chat template, passes frames in the form the model family wants, enforces each
prompt's answer schema with structured outputs, and hands the whole batch to the
engine at once (vLLM schedules it; prefix caching shares the system prompt). `stream`
takes requests one by one as they are ready and gives answers back as each finishes,
so the engine never drains between batches.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from mllm_mer.backends.base import BackendBase, answer_start, render
from mllm_mer.backends.engine_loop import EngineLoop
from mllm_mer.config import BackendConfig
from mllm_mer.core.families import explain_load_error, family_for, resolve_model
from mllm_mer.core.housekeeping import sweep_engine_leftovers
from mllm_mer.core.types import Prompt, Thought
from mllm_mer.media.audio import SAMPLE_RATE


class VLLMEngineBackend(BackendBase):
    name = "vllm"
    can_stream = True
    can_stream_scores = True
    can_peek = True

    def __init__(self, config: BackendConfig):
        from mllm_mer.backends.vllm_env import apply_log_level

        apply_log_level(config.engine.engine_log)  # read when vllm is imported: before the import
        from vllm import LLM
        from vllm.lora.request import LoRARequest

        from mllm_mer.backends.forced_tokens import ForcedTokens

        self.config = config
        model, engine = config.model, config.engine
        model_id = resolve_model(model.model)
        self.family = family_for(model_id)
        if _cpu_only():
            from mllm_mer.backends.vllm_env import apply_cpu_engine_env

            apply_cpu_engine_env(engine.kv_cache_gb)
        self.max_images = engine.max_images  # images per prompt the engine takes (the agent's looks stop there)
        self.max_audios = self.family.max_audios if self.family.hears_audio else 0
        self.adapters = {name: LoRARequest(name, i + 1, path) for i, (name, path) in enumerate(model.adapters.items())}
        engine_args: dict[str, Any] = dict(
            model=model_id, dtype="float32" if model.dtype == "auto" and _cpu_only() else model.dtype,
            trust_remote_code=model.trust_remote_code, max_model_len=engine.max_model_len,
            enforce_eager=engine.enforce_eager, enable_prefix_caching=True, seed=model.seed,
            tensor_parallel_size=engine.tensor_parallel_size, gpu_memory_utilization=engine.gpu_memory_utilization,
            # Images beyond the first are the drawn signals (--physio-view) or an agent's observations (look).
            limit_mm_per_prompt={"image": engine.max_images, "video": 1,
                                 **({"audio": self.max_audios} if self.max_audios else {})},
            # Per request this flag is ignored; without it a random model emits whitespace until max_tokens.
            structured_outputs_config={"backend": "xgrammar", "disable_any_whitespace": True},
            logits_processors=[ForcedTokens],
        )
        if _cpu_only():
            # Prefix-cache hits come in whole KV blocks; with the CPU default of 128 tokens each
            # label scored would recompute up to 127 prompt tokens. 32 is the smallest the CPU
            # attention kernel takes; generation speed is the same within noise (measured).
            engine_args["block_size"] = 32
        if self.family.video_processor_kwargs:
            engine_args["mm_processor_kwargs"] = dict(self.family.video_processor_kwargs)
        if engine.data_parallel_size > 1:
            engine_args["data_parallel_size"] = engine.data_parallel_size
        if self.adapters:
            engine_args.update(enable_lora=True, max_lora_rank=engine.max_lora_rank, max_loras=len(self.adapters))
        engine_args.update(engine.engine_args)  # vLLM's own EngineArgs fields, passed through
        sweep_engine_leftovers()  # what engines killed earlier left in /dev/shm and the temp folder
        try:
            self.llm = LLM(**engine_args)
        except OSError as error:
            raise explain_load_error(model.model, error) from error
        self.tokenizer = self.llm.get_tokenizer()
        self.loop = EngineLoop(self.llm)

    def _generate(self, requests: Sequence[dict[str, Any]], params: Any, lora_request: Any = None) -> list[Any]:
        """The outputs for `requests`, in order; the engine's refusal of an input (e.g. over the context
        length) is a ValueError, so that the pipeline fails that sample alone."""
        params = list(params) if isinstance(params, (list, tuple)) else [params.clone() for _ in requests]
        return self.loop.run(requests, params, lora_request)

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
        if prompt.audios:  # the waveform itself, 16 kHz mono (Omni thinkers)
            data["audio"] = [(a, SAMPLE_RATE) for a in prompt.audios]
        request: dict[str, Any] = {"prompt": text}
        if data:
            request["multi_modal_data"] = data
        return request

    def _answer(self, prompt: Prompt, temperature: float = 0.0, seed: int | None = None) -> tuple[dict, Any, str]:
        """(engine request, sampling parameters, the answer's opening written into the prompt) of one answer
        under its schema, or under the grammar of the rest of it after its opening (`prompting.opening`)."""
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        text, opening = answer_start(self.tokenizer, prompt)
        constraint = StructuredOutputsParams(grammar=opening.grammar) if opening else \
            StructuredOutputsParams(json=prompt.schema)
        params = SamplingParams(temperature=temperature, seed=seed if temperature > 0 else None,
                                max_tokens=self.config.model.max_new_tokens, structured_outputs=constraint)
        return self._request(prompt, text), params, opening.text if opening else ""

    def generate(self, prompts: Sequence[Prompt], adapter: str | None = None, temperature: float = 0.0,
                 seeds: Sequence[int] | None = None) -> list[str]:
        seeds = list(seeds) if seeds is not None else [None] * len(prompts)
        answers = [self._answer(p, temperature, seed) for p, seed in zip(prompts, seeds, strict=True)]
        outputs = self._generate([r for r, _, _ in answers], [p for _, p, _ in answers],
                                 lora_request=self._lora(adapter))
        return [opening + out.outputs[0].text for (_, _, opening), out in zip(answers, outputs, strict=True)]

    def _think_params(self, prompt: Prompt, temperature: float = 0.0, seed: int | None = None):
        from vllm import SamplingParams

        return SamplingParams(temperature=temperature, seed=seed if temperature > 0 else None,
                              max_tokens=prompt.reasoning.max_tokens, stop=[prompt.reasoning.close])

    def think(self, prompts: Sequence[Prompt], adapter: str | None = None, temperature: float = 0.0,
              seeds: Sequence[int] | None = None) -> list[Thought]:
        """Each prompt's reasoning block, unconstrained (no grammar), until its end or its token bound."""
        from mllm_mer.backends.base import thought_of

        seeds = list(seeds) if seeds is not None else [None] * len(prompts)
        params = [self._think_params(p, temperature, seed) for p, seed in zip(prompts, seeds, strict=True)]
        requests = [self._request(p, render(self.tokenizer, p)) for p in prompts]
        outputs = self._generate(requests, params, lora_request=self._lora(adapter))
        return [thought_of(out.outputs[0].text, len(out.outputs[0].token_ids), p.reasoning)
                for p, out in zip(prompts, outputs, strict=True)]

    @contextmanager
    def stream(self, adapter: str | None = None) -> Iterator[EngineStream]:
        """Continuous submission of greedy answers (see `EngineStream`); unfinished requests are
        aborted when the block ends."""
        stream = EngineStream(self, self._lora(adapter))
        try:
            yield stream
        finally:
            self.loop.abort(list(stream.keys))

    def generate_token_ids(self, prompts: Sequence[Prompt], adapter: str | None = None,
                           max_new_tokens: int = 16, ignore_eos: bool = False) -> list[list[int]]:
        """Unconstrained greedy token ids (parity checks; fixed-length runs for benchmarks)."""
        from vllm import SamplingParams

        params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens, ignore_eos=ignore_eos)
        requests = [self._request(p, render(self.tokenizer, p)) for p in prompts]
        outputs = self._generate(requests, params, lora_request=self._lora(adapter))
        return [list(out.outputs[0].token_ids) for out in outputs]

    def chat(self, prompt: Prompt, adapter: str | None = None, max_new_tokens: int = 256) -> Iterator[str]:
        """Free-text answer, streamed: the text so far after each engine step.

        `LLM.generate` returns whole answers only, so this drives the engine's own request loop
        (add_request + step); the caller must not run other requests on this engine meanwhile.
        """
        import uuid

        from vllm import SamplingParams

        engine = self.llm.llm_engine
        params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens)
        request_id = f"chat-{uuid.uuid4().hex}"
        try:
            engine.add_request(request_id, self._request(prompt, render(self.tokenizer, prompt)), params,
                               lora_request=self._lora(adapter))
        except Exception as error:  # the engine's own validation errors are not ValueErrors
            if type(error).__module__.startswith("vllm"):
                raise ValueError(str(error)) from None
            raise
        finished = False
        try:
            while not finished and engine.has_unfinished_requests():
                for out in engine.step():
                    if out.request_id == request_id:
                        finished = out.finished
                        yield out.outputs[0].text
        finally:
            if not finished:  # the reader stopped early: free the engine for the next request
                engine.abort_request([request_id])

    def score(self, requests: Sequence[tuple[Prompt, Sequence[str]]],
              adapter: str | None = None) -> list[list[float]]:
        """Per prompt, each candidate's log-probability under decoding constrained to the candidates.

        Only the branch points of the candidates' token trie need reading (see `label_scoring`).
        One request per reading path walks down it by forced decoding (`forced_tokens`),
        reading the branch tokens' log-probabilities at each step: usually one request per
        prompt. Later paths of a prompt go in a later wave, so its prompt comes from the
        prefix cache. (Prompt log-probabilities would make vLLM bypass the prefix cache.)
        """
        from mllm_mer.backends.label_scoring import constrained_logprobs

        walks = [self._score_walks(prompt, texts) for prompt, texts in requests]
        readings: list[dict] = [{} for _ in requests]
        for wave in range(max((len(w) for _, w in walks), default=0)):
            owners = [i for i, (_, w) in enumerate(walks) if wave < len(w)]
            outputs = self._generate([walks[i][1][wave][1] for i in owners], [walks[i][1][wave][2] for i in owners],
                                     lora_request=self._lora(adapter))
            for i, out in zip(owners, outputs, strict=True):
                read_walk(out, walks[i][1][wave][0], readings[i])
        return [constrained_logprobs(ids, r) for (ids, _), r in zip(walks, readings, strict=True)]

    def _score_walks(self, prompt: Prompt, texts: Sequence[str]) -> tuple[list[list[int]], list[tuple]]:
        """The candidates' token ids and, per reading path, (walk, engine request, sampling parameters)."""
        from vllm import SamplingParams

        from mllm_mer.backends.forced_tokens import FORCED_TOKENS
        from mllm_mer.backends.label_scoring import reading_paths

        candidates = [self.tokenizer(c, add_special_tokens=False)["input_ids"] for c in texts]
        base = self._request(prompt, "")
        base.pop("prompt")
        prompt_ids = self.tokenizer(render(self.tokenizer, prompt), add_special_tokens=False)["input_ids"]
        walks = []
        for walk in reading_paths(candidates):
            forced = list(walk.path[walk.start:walk.reads[-1] + 1])
            params = SamplingParams(temperature=0.0, max_tokens=len(forced), ignore_eos=True, detokenize=False,
                                    logprob_token_ids=list(walk.tokens), extra_args={FORCED_TOKENS: forced})
            walks.append((walk, {**base, "prompt_token_ids": prompt_ids + list(walk.path[:walk.start])}, params))
        return candidates, walks

    def close(self) -> None:
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None:
            engine = getattr(llm, "llm_engine", None)
            shutdown = getattr(engine, "engine_core", None)
            if shutdown is not None and hasattr(shutdown, "shutdown"):
                shutdown.shutdown()


def read_walk(out: Any, walk: Any, readings: dict) -> None:
    """The branch tokens' log-probabilities one forced walk read, into `readings` (prefix -> token -> logprob)."""
    steps = out.outputs[0].logprobs
    if list(out.outputs[0].token_ids) != list(walk.path[walk.start:walk.reads[-1] + 1]):
        raise RuntimeError("the engine did not follow the forced continuation; cannot score it")
    for depth in walk.reads:
        step = steps[depth - walk.start]
        readings[walk.path[:depth]] = {t: step[t].logprob for t in walk.tokens}


class EngineStream:
    """Answers requested one by one, collected as each finishes.

    The caller submits prompts as it prepares them and calls `collect` to advance the
    engine; the engine's scheduler always has the whole backlog, as with one big
    `generate`, but the first answers come back (and are saved) while later prompts are
    still being prepared. Other calls on the same backend (label scoring) may run in
    between: the shared `EngineLoop` keeps everyone's outputs apart.
    """

    room = True  # the engine queues what it cannot yet run; the caller's lookahead bounds memory

    def __init__(self, backend: VLLMEngineBackend, lora: Any):
        self.backend, self.lora = backend, lora
        self.watching = False  # True: answers submitted from now on show their text so far (`peek`)
        self.keys: dict[str, Any] = {}  # request id -> the caller's key
        self.scoring: dict[Any, tuple[list, dict[str, Any], dict]] = {}  # key -> candidates, walks left, readings
        self.thinking: dict[Any, Any] = {}  # key -> the reasoning block it writes
        self.openings: dict[str, str] = {}  # answer request id -> the opening its prompt ends with

    @property
    def pending(self) -> int:
        return len(set(self.keys.values()))

    def submit_score(self, key: Any, prompt: Prompt, texts: Sequence[str]) -> None:
        """Queue the scoring of one prompt's candidates: every reading walk at once, so no read waits for
        another; `collect` gives back (key, the candidates' log-probabilities) once all are read."""
        candidates, walks = self.backend._score_walks(prompt, texts)
        ids: list[str] = []
        try:
            for _, request, params in walks:
                ids.append(self.backend.loop.add(request, params, self.lora))
        except BaseException:
            self.backend.loop.abort(ids)
            raise
        self.scoring[key] = (candidates, {i: w for i, (w, _, _) in zip(ids, walks, strict=True)}, {})
        self.keys.update(dict.fromkeys(ids, key))

    def submit(self, key: Any, prompt: Prompt, temperature: float = 0.0, seed: int | None = None) -> None:
        """Queue one prompt's answer under its schema; ValueError if the engine refuses it (nothing is queued then)."""
        request, params, opening = self.backend._answer(prompt, temperature, seed)
        request_id = self.backend.loop.add(request, params, self.lora, watch=self.watching)
        self.keys[request_id] = key
        self.openings[request_id] = opening

    def peek(self) -> list[tuple[Any, str]]:
        """(key, the answer's text so far) for each watched answer that wrote more since the last look."""
        return [(self.keys[i], self.openings.get(i, "") + text)
                for i, text in self.backend.loop.partial(list(self.keys)).items()]

    def drop(self, key: Any) -> None:
        """Abort every request of `key`; nothing of it is collected."""
        ids = [i for i, k in self.keys.items() if k == key]
        self.backend.loop.abort(ids)
        for i in ids:
            del self.keys[i]
            self.openings.pop(i, None)
        self.scoring.pop(key, None)
        self.thinking.pop(key, None)

    def submit_think(self, key: Any, prompt: Prompt, temperature: float = 0.0, seed: int | None = None) -> None:
        """Queue one prompt's reasoning block (as `think` writes it); collected as a `Thought`."""
        backend = self.backend
        request = backend._request(prompt, render(backend.tokenizer, prompt))
        self.keys[backend.loop.add(request, backend._think_params(prompt, temperature, seed), self.lora)] = key
        self.thinking[key] = prompt.reasoning

    def collect(self) -> list[tuple[Any, str | list[float]]]:
        """One engine step; what finished: (key, answer text), (key, Thought) for a reasoning block, or (key,
        log-probabilities) for a scoring."""
        from mllm_mer.backends.base import thought_of
        from mllm_mer.backends.label_scoring import constrained_logprobs

        loop = self.backend.loop
        loop.step()
        done: list[tuple[Any, str | list[float]]] = []
        for i, out in loop.take(list(self.keys)).items():
            key = self.keys.pop(i)
            if key in self.thinking:
                done.append((key, thought_of(out.outputs[0].text, len(out.outputs[0].token_ids),
                                             self.thinking.pop(key))))
                continue
            if key not in self.scoring:
                done.append((key, self.openings.pop(i, "") + out.outputs[0].text))
                continue
            candidates, walks, readings = self.scoring[key]
            read_walk(out, walks.pop(i), readings)
            if not walks:
                del self.scoring[key]
                done.append((key, constrained_logprobs(candidates, readings)))
        return done


def _cpu_only() -> bool:
    import torch

    return not torch.cuda.is_available()
