"""Backend over a running OpenAI-compatible server (`mllm-mer serve`, or any vLLM server).

The prompt's messages go out as they are, with media parts turned into data URLs
(an image as PNG, sampled frames as a small mp4), the answer schema as
`response_format` (or, after the answer's forced opening, the grammar of the rest: `prompting.opening`),
and the adapter chosen by model name.
"""
from __future__ import annotations

import base64
import hashlib
import io
import os
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import Any

# Loaded here, on the importing thread: the openai package checks sys.modules for httpx on every reply, and a
# first `import httpx` on a request thread left it half-initialised there (AttributeError: httpx.Response).
import httpx

from mllm_mer.backends.base import BackendBase
from mllm_mer.backends.label_scoring import (
    branch_points,
    constrained_logprobs,
    readings_from_token_logprobs,
)
from mllm_mer.config import BackendConfig, ClientConfig
from mllm_mer.core.families import video_fps
from mllm_mer.core.paths import ADAPTER_PROMPTS_ROUTE
from mllm_mer.core.types import Prompt, ServiceError, Thought
from mllm_mer.media.audio import SAMPLE_RATE
from mllm_mer.prompting.opening import answer_opening


def image_data_url(image) -> str:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def frames_data_url(frames: Sequence[Any]) -> str:
    """The sampled frames as vLLM's frame-sequence data URL (`video/jpeg`: comma-separated images, here PNG,
    so the server decodes exactly the pixels the in-process engine gets and samples none of them again)."""
    return "data:video/jpeg;base64," + ",".join(image_data_url(f).partition(",")[2] for f in frames)


def request_extras(prompt: Prompt) -> dict[str, Any]:
    """What a request carries beside its messages: the frames' true rate (the sequence has no clock)."""
    if not prompt.media.frames:
        return {}
    return {"media_io_kwargs": {"video": {"fps": video_fps(prompt.media.frame_times)}}}


def wav_bytes(waveform: Any, rate: int = SAMPLE_RATE) -> bytes:
    """A 16 kHz mono float waveform as a 16-bit PCM WAV file (what the server decodes, losslessly enough)."""
    import wave

    import numpy as np

    pcm = (np.clip(np.asarray(waveform, dtype=np.float32), -1.0, 1.0) * 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())
    return buffer.getvalue()


def to_openai_messages(prompt: Prompt) -> list[dict[str, Any]]:
    messages = []
    images, audios = iter(prompt.images), iter(prompt.audios)  # placeholders and media are in the same order
    for message in prompt.messages:
        content = message["content"]
        if isinstance(content, list):
            parts = []
            for part in content:
                if part["type"] == "image":
                    parts.append({"type": "image_url", "image_url": {"url": image_data_url(next(images))}})
                elif part["type"] == "video":
                    parts.append({"type": "video_url", "video_url": {"url": frames_data_url(prompt.media.frames)}})
                elif part["type"] == "audio":  # inline, as the server's guard requires of all media
                    url = "data:audio/wav;base64," + base64.b64encode(wav_bytes(next(audios))).decode()
                    parts.append({"type": "audio_url", "audio_url": {"url": url}})
                else:
                    parts.append(part)
            content = parts
        messages.append({"role": message["role"], "content": content})
    return messages


def continued(prompt: Prompt, written: str = "") -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The messages and request extras of a prompt whose assistant turn is already begun (`written` after
    the prompt's own reasoning lead): the server continues that message instead of opening a new one."""
    messages, extras = to_openai_messages(prompt), request_extras(prompt)
    text = prompt.written() + written
    if not text:
        return messages, extras
    return (messages + [{"role": "assistant", "content": text}],
            {**extras, "continue_final_message": True, "add_generation_prompt": False})


def served_adapter_prompts(client: ClientConfig) -> dict[str, Any] | None:
    """What the server at the first --base-url says of its adapters' prompts (`mllm-mer serve` does);
    None when it says nothing (another server)."""
    root = client.base_url[0].rstrip("/").removesuffix("/v1")
    key = client.api_key or os.environ.get("MLLM_MER_API_KEY")
    try:
        reply = httpx.get(f"{root}{ADAPTER_PROMPTS_ROUTE}", timeout=client.timeout_s,
                          headers={"Authorization": f"Bearer {key}"} if key else {})
    except httpx.HTTPError as error:
        raise ConnectionError(f"cannot reach the server at {root}: {error}") from None
    if reply.status_code == 401:
        raise PermissionError(f"the server at {root} refused the key (set MLLM_MER_API_KEY)")
    if reply.status_code != 200:
        return None
    try:
        table = reply.json()
    except ValueError:
        return None
    return table if isinstance(table, dict) else None


class OpenAIBackend(BackendBase):
    name = "openai"
    can_stream = True
    can_stream_scores = True  # a scoring is one more task of the stream's pool

    def __init__(self, config: BackendConfig):
        import openai

        client = config.client
        if not client.base_url:
            raise ValueError("the openai backend needs --base-url (e.g. http://127.0.0.1:8000/v1)")
        self.config = config
        self.base_urls = [url.rstrip("/") + ("" if url.rstrip("/").endswith("/v1") else "/v1")
                          for url in client.base_url]
        self.base_url = self.base_urls[0]  # tokenising and free-text chat go here
        self.clients = [openai.OpenAI(base_url=url, api_key=client.api_key or "EMPTY", timeout=client.timeout_s,
                                      max_retries=client.retries) for url in self.base_urls]
        self.client = self.clients[0]
        self._in_flight = [0] * len(self.clients)
        self._pick = threading.Lock()
        self.max_concurrency = max(1, client.concurrency) * len(self.clients)
        self._token_cache: dict[tuple, Any] = {}  # labels repeat across prompts
        self.served = self._served_models()
        self.model_name = config.model.model if config.model.model in self.served else self.served[0]

    @contextmanager
    def _server(self, key: str | None = None) -> Iterator[Any]:
        """A server's client: the least busy one, or for a `key` always the same one (so a prompt's
        scoring requests meet its prefix in that server's cache)."""
        with self._pick:
            if key is None:
                i = self._in_flight.index(min(self._in_flight))
            else:
                i = int(hashlib.sha256(key.encode()).hexdigest(), 16) % len(self.clients)
            self._in_flight[i] += 1
        try:
            yield self.clients[i]
        finally:
            with self._pick:
                self._in_flight[i] -= 1

    def _call(self, fn, *args, **kwargs):
        import openai

        url = self.base_url if len(self.base_urls) == 1 else f"one of {', '.join(self.base_urls)}"
        try:
            return fn(*args, **kwargs)
        except openai.APIConnectionError as error:
            raise ConnectionError(f"cannot reach the OpenAI-compatible server at {url} ({error}); "
                                  "is `mllm-mer serve` running?") from None
        except openai.AuthenticationError:
            raise ConnectionError(f"the server at {url} refused the API key") from None
        except openai.APIStatusError as error:
            raise ServiceError(f"server at {url} answered {error.status_code}: {error.message}") from None

    def _served_models(self) -> list[str]:
        """The models every server serves (each server is asked: a down or different one fails now)."""
        served = None
        for url, client in zip(self.base_urls, self.clients, strict=True):
            models = [m.id for m in self._call(client.models.list).data]
            if not models:
                raise ServiceError(f"the server at {url} serves no model")
            if served is not None and set(models) != set(served):
                raise ServiceError(f"the servers serve different models: {self.base_urls[0]} has "
                                   f"{', '.join(served)}; {url} has {', '.join(models)}")
            served = served or models
        return served

    def _model_for(self, adapter: str | None) -> str:
        if adapter is None:
            return self.model_name
        if adapter not in self.served:
            raise ValueError(f"adapter {adapter!r} is not served at {self.base_url} (served: {', '.join(self.served)})")
        return adapter

    def _one(self, prompt: Prompt, model: str, temperature: float = 0.0, seed: int | None = None) -> str:
        opening = answer_opening(prompt)
        messages, extras = continued(prompt, opening.text if opening else "")
        if opening:  # the server continues the opened answer under the grammar of the rest
            constraint = {"extra_body": {**extras, "structured_outputs": {"grammar": opening.grammar}}}
        else:
            constraint = {"extra_body": extras, "response_format": {
                "type": "json_schema", "json_schema": {"name": "answer", "schema": prompt.schema, "strict": True}}}
        with self._server() as client:
            response = self._call(
                client.chat.completions.create, model=model, messages=messages, temperature=temperature, seed=seed,
                max_tokens=self.config.model.max_new_tokens, **constraint)
        return (opening.text if opening else "") + (response.choices[0].message.content or "")

    def generate(self, prompts: Sequence[Prompt], adapter: str | None = None, temperature: float = 0.0,
                 seeds: Sequence[int] | None = None) -> list[str]:
        model = self._model_for(adapter)
        seeds = list(seeds) if seeds is not None else [None] * len(prompts)
        with ThreadPoolExecutor(self.max_concurrency) as pool:  # the server batches concurrent requests
            return list(pool.map(lambda p, seed: self._one(p, model, temperature, seed), prompts, seeds))

    def think(self, prompts: Sequence[Prompt], adapter: str | None = None, temperature: float = 0.0,
              seeds: Sequence[int] | None = None) -> list[Thought]:
        """Each prompt's reasoning block, unconstrained (no response format), until its end or its bound."""
        model = self._model_for(adapter)
        seeds = list(seeds) if seeds is not None else [None] * len(prompts)
        with ThreadPoolExecutor(self.max_concurrency) as pool:
            return list(pool.map(lambda p, seed: self._think_one(p, model, temperature, seed), prompts, seeds))

    def _think_one(self, prompt: Prompt, model: str, temperature: float, seed: int | None) -> Thought:
        from mllm_mer.backends.base import thought_of

        messages, extras = continued(prompt)
        with self._server() as client:
            response = self._call(client.chat.completions.create, model=model, messages=messages,
                                  extra_body=extras, temperature=temperature, seed=seed,
                                  max_tokens=prompt.reasoning.max_tokens, stop=[prompt.reasoning.close])
        message = response.choices[0].message
        # A server started with a reasoning parser hands the think block back apart from the content.
        text = (message.model_extra or {}).get("reasoning_content") or message.content or ""
        return thought_of(text, response.usage.completion_tokens, prompt.reasoning)

    @contextmanager
    def stream(self, adapter: str | None = None) -> Iterator[ConcurrentStream]:
        """Continuous submission: at most `concurrency` requests in flight, each answer (a thought, a label
        scoring) collected as it finishes, so the server's continuous batching always has work (see
        `ConcurrentStream`)."""
        model = self._model_for(adapter)
        pool = ThreadPoolExecutor(self.max_concurrency)
        stream = ConcurrentStream(lambda prompt, temperature, seed: self._one(prompt, model, temperature, seed),
                                  self.max_concurrency, pool,
                                  think=lambda prompt, temperature, seed: self._think_one(prompt, model, temperature,
                                                                                          seed),
                                  score=lambda prompt, texts: self.score([(prompt, texts)], adapter)[0])
        try:
            yield stream
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def chat(self, prompt: Prompt, adapter: str | None = None, max_new_tokens: int = 256) -> Iterator[str]:
        """Free-text answer, streamed token by token from the server (accumulated text so far); after the
        prompt's reasoning, when it reasoned first (the assistant message is continued)."""
        messages, extras = continued(prompt)
        stream = self._call(self.client.chat.completions.create, model=self._model_for(adapter),
                            messages=messages, temperature=0.0, max_tokens=max_new_tokens,
                            stream=True, extra_body=extras)
        text = ""
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                text += chunk.choices[0].delta.content
                yield text

    # -- scoring ----------------------------------------------------------------------------
    def score(self, requests: Sequence[tuple[Prompt, Sequence[str]]],
              adapter: str | None = None) -> list[list[float]]:
        """One short request per branch point of each prompt's candidates (see `choice`).

        Each continues the assistant message up to the branch point and asks for the log-
        probabilities of the branch tokens at the next position (`logprob_token_ids`); the
        server's prefix cache serves the prompt after the first. A prompt whose branch
        prefix the server tokenises differently falls back to whole-candidate prompt
        log-probabilities (exact, but they bypass the prefix cache).
        """
        model = self._model_for(adapter)
        with ThreadPoolExecutor(self.max_concurrency) as pool:
            candidates = [list(pool.map(lambda text: self._tokenize(text, model), texts)) for _, texts in requests]
            messages = list(pool.map(lambda r: to_openai_messages(r[0]), requests))
            extras = [request_extras(prompt) for prompt, _ in requests]
            leads = [prompt.written() for prompt, _ in requests]  # the reasoning the answer follows
            points = [sorted(branch_points(ids).items(), key=lambda item: len(item[0])) for ids in candidates]
            readings: list[dict | None] = [{} for _ in requests]
            for rank in range(max(map(len, points), default=0)):  # shallow first: later ones hit the cache
                jobs = [(i, *points[i][rank]) for i in range(len(requests))
                        if rank < len(points[i]) and readings[i] is not None]
                read = pool.map(lambda job: self._read_branch(messages[job[0]], job[1], job[2], model,
                                                              extras[job[0]], leads[job[0]]), jobs)
                for (i, prefix, _), reading in zip(jobs, read, strict=True):
                    readings[i] = None if reading is None else {**readings[i], prefix: reading}
            fallback = [(i, text) for i, r in enumerate(readings) if r is None for text in requests[i][1]]
            logprobs = list(pool.map(lambda job: self._candidate_logprobs(messages[job[0]], job[1], model,
                                                                          extras[job[0]], leads[job[0]]), fallback))
        for i in {i for i, _ in fallback}:
            readings[i] = readings_from_token_logprobs(
                candidates[i], [lp for (j, _), lp in zip(fallback, logprobs, strict=False) if j == i])
        return [constrained_logprobs(ids, r) for ids, r in zip(candidates, readings, strict=True)]

    def _read_branch(self, messages: list[dict], prefix: tuple[int, ...], tokens: set[int],
                     model: str, extras: dict[str, Any], lead: str = "") -> dict[int, float] | None:
        """Next-token log-probabilities of `tokens` after the assistant has written `lead` and `prefix`."""
        text = lead + self._detokenize(prefix, model)
        with self._server(key=str(id(messages))) as client:  # a prompt's reads meet its cached prefix
            response = self._call(
                client.chat.completions.create, model=model, max_tokens=1, temperature=0.0, logprobs=True,
                messages=messages + [{"role": "assistant", "content": text}],
                extra_body={"continue_final_message": True, "add_generation_prompt": False,
                            "logprob_token_ids": sorted(tokens), "return_tokens_as_token_ids": True,
                            "return_token_ids": True, **extras})
        prompt_ids = response.model_extra.get("prompt_token_ids") or []
        if prefix and list(prompt_ids[-len(prefix):]) != list(prefix):
            return None
        [step] = response.choices[0].logprobs.content
        found = {int(entry.token.removeprefix("token_id:")): entry.logprob for entry in step.top_logprobs}
        return {t: found[t] for t in tokens}

    def _candidate_logprobs(self, messages: list[dict], continuation: str, model: str,
                            extras: dict[str, Any], lead: str = "") -> list[float]:
        ids = self._tokenize(continuation, model)
        with self._server(key=str(id(messages))) as client:
            response = self._call(
                client.chat.completions.create, model=model, max_tokens=1, temperature=0.0,
                messages=messages + [{"role": "assistant", "content": lead + continuation}],
                extra_body={"prompt_logprobs": 0, "continue_final_message": True, "add_generation_prompt": False,
                            **extras})
        tail = response.model_extra["prompt_logprobs"][-len(ids):]
        return [entry[str(token_id)]["logprob"] for token_id, entry in zip(ids, tail, strict=False)]

    def _tokenize(self, text: str, model: str) -> tuple[int, ...]:
        key = ("tokenize", model, text)
        if key not in self._token_cache:
            body = {"model": model, "prompt": text, "add_special_tokens": False}
            self._token_cache[key] = tuple(self._post("tokenize", body)["tokens"])
        return self._token_cache[key]

    def _detokenize(self, ids: tuple[int, ...], model: str) -> str:
        key = ("detokenize", model, ids)
        if key not in self._token_cache:
            self._token_cache[key] = self._post("detokenize", {"model": model, "tokens": list(ids)})["prompt"] \
                if ids else ""
        return self._token_cache[key]

    def _post(self, route: str, body: dict) -> dict:
        headers = {"Authorization": f"Bearer {self.config.client.api_key}"} if self.config.client.api_key else {}
        root = self.base_url[: -len("/v1")]
        return self._call(lambda: httpx.post(f"{root}/{route}", json=body, headers=headers,
                                             timeout=self.config.client.timeout_s).json())

    def close(self) -> None:
        for client in self.clients:
            client.close()


class ConcurrentStream:
    """Prompts submitted one by one to a bounded pool of requests; answers collected as each finishes.

    An answer the server refused comes back as its exception (the pipeline fails that
    sample alone, or stops the run for a lost connection)."""

    def __init__(self, call, concurrency: int, pool: ThreadPoolExecutor, think=None, score=None):
        self.call, self.concurrency, self.pool = call, concurrency, pool
        self.think, self.score = think, score
        self.keys: dict[Future, Any] = {}

    @property
    def pending(self) -> int:
        return len(self.keys)

    @property
    def room(self) -> bool:
        return len(self.keys) < self.concurrency

    def submit(self, key: Any, prompt: Prompt, temperature: float = 0.0, seed: int | None = None) -> None:
        self.keys[self.pool.submit(self.call, prompt, temperature, seed)] = key

    def submit_think(self, key: Any, prompt: Prompt, temperature: float = 0.0, seed: int | None = None) -> None:
        self.keys[self.pool.submit(self.think, prompt, temperature, seed)] = key

    def submit_score(self, key: Any, prompt: Prompt, texts: Sequence[str]) -> None:
        self.keys[self.pool.submit(self.score, prompt, texts)] = key

    def collect(self, timeout: float = 0.05) -> list[tuple[Any, str | Exception]]:
        """The answers that finished within `timeout` seconds (short, so that new prompts keep coming)."""
        done, _ = wait(list(self.keys), timeout=timeout, return_when=FIRST_COMPLETED)
        return [(self.keys.pop(f), f.exception() or f.result()) for f in done]
