"""Backend over a running OpenAI-compatible server (`mllm-mer serve`, or any vLLM server).

The prompt's messages go out as they are, with media parts turned into data URLs
(an image as PNG, sampled frames as a small mp4), the answer schema as
`response_format`, and the adapter chosen by model name.
"""
from __future__ import annotations

import base64
import io
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from mllm_mer.backends.choice import constrained_logprobs, readings_from_token_logprobs
from mllm_mer.config import BackendConfig
from mllm_mer.models import video_fps
from mllm_mer.prompting import Prompt


def image_data_url(image) -> str:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def frames_to_mp4(frames: Sequence[Any], fps: float) -> bytes:
    """Encode sampled frames as a short near-lossless H.264 clip (frames sent, not re-sampled)."""
    from fractions import Fraction

    import av

    buffer = io.BytesIO()
    width, height = frames[0].size
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height = width - width % 2, height - height % 2
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "10", "preset": "veryfast"}
        for image in frames:
            frame = av.VideoFrame.from_image(image.convert("RGB").resize((stream.width, stream.height)))
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return buffer.getvalue()


def to_openai_messages(prompt: Prompt) -> list[dict[str, Any]]:
    messages = []
    for message in prompt.messages:
        content = message["content"]
        if isinstance(content, list):
            parts = []
            for part in content:
                if part["type"] == "image":
                    parts.append({"type": "image_url", "image_url": {"url": image_data_url(part["image"])}})
                elif part["type"] == "video":
                    mp4 = frames_to_mp4(part["video"], video_fps(prompt.media.frame_times))
                    url = "data:video/mp4;base64," + base64.b64encode(mp4).decode()
                    parts.append({"type": "video_url", "video_url": {"url": url}})
                else:
                    parts.append(part)
            content = parts
        messages.append({"role": message["role"], "content": content})
    return messages


class OpenAIBackend:
    name = "openai"

    def __init__(self, config: BackendConfig, max_concurrency: int = 8):
        import openai

        if not config.base_url:
            raise ValueError("the openai backend needs --base-url (e.g. http://127.0.0.1:8000/v1)")
        self.config = config
        self.base_url = config.base_url.rstrip("/")
        if not self.base_url.endswith("/v1"):
            self.base_url += "/v1"
        self.client = openai.OpenAI(base_url=self.base_url, api_key=config.api_key or "EMPTY",
                                    timeout=config.timeout_s, max_retries=config.retries)
        self.max_concurrency = max_concurrency
        self.served = self._served_models()
        self.model_name = config.model if config.model in self.served else self.served[0]

    def _call(self, fn, *args, **kwargs):
        import openai

        try:
            return fn(*args, **kwargs)
        except openai.APIConnectionError as error:
            raise ConnectionError(f"cannot reach the OpenAI-compatible server at {self.base_url} ({error}); "
                                  "is `mllm-mer serve` running?") from None
        except openai.AuthenticationError:
            raise ConnectionError(f"the server at {self.base_url} refused the API key") from None
        except openai.APIStatusError as error:
            raise RuntimeError(f"server at {self.base_url} answered {error.status_code}: {error.message}") from None

    def _served_models(self) -> list[str]:
        models = [m.id for m in self._call(self.client.models.list).data]
        if not models:
            raise RuntimeError(f"the server at {self.base_url} serves no model")
        return models

    def _model_for(self, adapter: str | None) -> str:
        if adapter is None:
            return self.model_name
        if adapter not in self.served:
            raise ValueError(f"adapter {adapter!r} is not served at {self.base_url} (served: {', '.join(self.served)})")
        return adapter

    def _one(self, prompt: Prompt, model: str) -> str:
        response = self._call(
            self.client.chat.completions.create, model=model, messages=to_openai_messages(prompt),
            temperature=0.0, max_tokens=self.config.max_new_tokens,
            response_format={"type": "json_schema",
                             "json_schema": {"name": "answer", "schema": prompt.schema, "strict": True}})
        return response.choices[0].message.content or ""

    def generate(self, prompts: Sequence[Prompt], adapter: str | None = None) -> list[str]:
        model = self._model_for(adapter)
        with ThreadPoolExecutor(self.max_concurrency) as pool:  # the server batches concurrent requests
            return list(pool.map(lambda p: self._one(p, model), prompts))

    def chat(self, prompt: Prompt, adapter: str | None = None, max_new_tokens: int = 256) -> Iterator[str]:
        """Free-text answer, streamed token by token from the server (accumulated text so far)."""
        stream = self._call(self.client.chat.completions.create, model=self._model_for(adapter),
                            messages=to_openai_messages(prompt), temperature=0.0, max_tokens=max_new_tokens,
                            stream=True)
        text = ""
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                text += chunk.choices[0].delta.content
                yield text

    def _token_logprobs(self, prompt: Prompt, continuation: str,
                        model: str) -> tuple[list[int], list[float]]:
        import httpx

        headers = {"Authorization": f"Bearer {self.config.api_key}"} if self.config.api_key else {}
        root = self.base_url[: -len("/v1")]
        ids = self._call(lambda: httpx.post(f"{root}/tokenize", json={"model": model, "prompt": continuation,
                                                                      "add_special_tokens": False},
                                            headers=headers, timeout=self.config.timeout_s).json()["tokens"])
        messages = to_openai_messages(prompt) + [{"role": "assistant", "content": continuation}]
        response = self._call(
            self.client.chat.completions.create, model=model, messages=messages, max_tokens=1, temperature=0.0,
            extra_body={"prompt_logprobs": 0, "continue_final_message": True, "add_generation_prompt": False})
        prompt_logprobs = response.model_extra["prompt_logprobs"]
        tail = prompt_logprobs[-len(ids):]
        return ids, [entry[str(token_id)]["logprob"] for token_id, entry in zip(ids, tail)]

    def score(self, requests: Sequence[tuple[Prompt, Sequence[str]]],
              adapter: str | None = None) -> list[list[float]]:
        model = self._model_for(adapter)
        pairs = [(prompt, text) for prompt, texts in requests for text in texts]
        with ThreadPoolExecutor(self.max_concurrency) as pool:
            scored = list(pool.map(lambda r: self._token_logprobs(r[0], r[1], model), pairs))
        out, at = [], 0
        for _, texts in requests:
            ids, logprobs = zip(*scored[at:at + len(texts)])
            out.append(constrained_logprobs(ids, readings_from_token_logprobs(ids, logprobs)))
            at += len(texts)
        return out

    def close(self) -> None:
        self.client.close()
