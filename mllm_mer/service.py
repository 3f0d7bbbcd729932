"""What the Gradio front end calls: analyse clips (batched), chat about one, run a split.

Holds one backend for the process, loaded on first use, and serialises calls into
it (engines are not thread-safe); concurrent analyse requests arrive batched, so
they reach vLLM as one batch.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mllm_mer.config import BackendConfig, PromptConfig
from mllm_mer.labels import load_label_spec
from mllm_mer.media import MediaError, MediaSettings
from mllm_mer.prompting import Prompt
from mllm_mer.types import Prediction, Sample, Turn

CHAT_SYSTEM_NOTE = ("Answer the user's follow-up question about the clip in plain sentences, "
                    "consistent with the evidence and your earlier answer.")


@dataclass
class AppConfig:
    model: str = "Qwen/Qwen2.5-VL-7B-Instruct"
    backend: str = "vllm"  # vllm (in-process engine) | transformers | openai (a running `mllm-mer serve`)
    adapters: dict[str, str] = field(default_factory=dict)
    base_url: str | None = None
    api_key: str | None = None
    labels: str = "meld"
    template: str = "zero_shot"
    max_frames: int = 8
    asr_model: str | None = None  # Whisper id/path: fills an empty transcript from the audio
    dtype: str = "auto"
    enforce_eager: bool = False
    kv_cache_gb: int = 1
    max_model_len: int = 8192
    max_new_tokens: int = 1024
    chat_max_new_tokens: int = 256
    host: str = "127.0.0.1"
    port: int = 7860
    auth: str | None = None  # "user:password"
    max_upload_mb: int = 200
    concurrency: int = 4  # simultaneous requests per event; analyse requests are batched up to 16
    runs_dir: str = "runs/app"

    def backend_config(self) -> BackendConfig:
        return BackendConfig(model=self.model, backend=self.backend, adapters=dict(self.adapters), dtype=self.dtype,
                             base_url=self.base_url, api_key=self.api_key, enforce_eager=self.enforce_eager,
                             kv_cache_gb=self.kv_cache_gb, max_model_len=self.max_model_len,
                             max_new_tokens=self.max_new_tokens)


@dataclass
class AnalyseRequest:
    video: str | None = None
    audio: str | None = None
    transcript: str = ""
    context: list[tuple[str, str]] = field(default_factory=list)  # (speaker, text)
    labels: str = "meld"
    template: str = "zero_shot"
    adapter: str | None = None


@dataclass
class Analysis:
    prediction: Prediction
    prompt: Prompt | None
    labels: str
    adapter: str | None


class Service:
    def __init__(self, config: AppConfig, backend=None):
        self.config = config
        self._backend = backend
        self._lock = threading.Lock()

    @property
    def backend(self):
        with self._lock:
            if self._backend is None:
                from mllm_mer.backends import load_backend

                self._backend = load_backend(self.config.backend_config())
            return self._backend

    def media_settings(self) -> MediaSettings:
        return MediaSettings(max_frames=self.config.max_frames, asr_model=self.config.asr_model)

    def adapters(self) -> list[str]:
        return list(getattr(self._backend, "adapters", None) or self.config.adapters)

    # -- analyse ------------------------------------------------------------------------------
    def analyse_many(self, requests: list[AnalyseRequest]) -> list[Analysis]:
        """Requests grouped by (labels, template, adapter); each group is one backend batch."""
        from mllm_mer.pipeline import prepare, run_prompts

        backend = self.backend
        results: list[Analysis | None] = [None] * len(requests)
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault((r.labels, r.template, r.adapter), []).append(i)
        for (labels, template, adapter), indices in groups.items():
            spec = load_label_spec(labels)
            prompt_cfg = PromptConfig(labels=labels, template=template)
            samples = [self._sample(requests[i], n) for n, i in enumerate(indices)]
            prepared = prepare(samples, spec, prompt_cfg, self.media_settings())
            ready = [p for p in prepared if p.prompt is not None]
            with self._lock:
                answered = iter(run_prompts(backend, [p.prompt for p in ready], "generate", adapter) if ready else [])
            for i, p in zip(indices, prepared):
                prediction = next(answered) if p.prompt is not None else Prediction.failure(p.sample.id, p.error)
                results[i] = Analysis(prediction, p.prompt, labels, adapter)
        return results  # type: ignore[return-value]

    @staticmethod
    def _sample(request: AnalyseRequest, n: int) -> Sample:
        context = tuple(Turn(speaker=str(s or "").strip() or "Speaker", text=str(t).strip())
                        for s, t in request.context if str(t or "").strip())
        return Sample(id=f"upload-{n}", video=request.video or None, audio=request.audio or None,
                      transcript=request.transcript.strip() or None, context=context)

    # -- chat ---------------------------------------------------------------------------------
    def chat(self, analysis: Analysis, history: list[tuple[str, str]], question: str) -> Iterator[str]:
        """Stream an answer to a follow-up question, with the clip and the earlier answer in context."""
        if analysis.prompt is None:
            raise MediaError("the clip", "was not analysed successfully; analyse a clip first")
        messages = [dict(m) for m in analysis.prompt.messages]
        messages[0] = {"role": "system", "content": messages[0]["content"] + "\n\n" + CHAT_SYSTEM_NOTE}
        messages.append({"role": "assistant", "content": analysis.prediction.raw or ""})
        for user, assistant in history:
            messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
        messages.append({"role": "user", "content": question})
        chat_prompt = Prompt(sample_id="chat", messages=messages, schema={}, label_sets=analysis.prompt.label_sets,
                             with_rationale=False, media=analysis.prompt.media)
        backend = self.backend
        with self._lock:
            yield from backend.chat(chat_prompt, adapter=analysis.adapter,
                                    max_new_tokens=self.config.chat_max_new_tokens)

    # -- batch --------------------------------------------------------------------------------
    def run_batch(self, manifest: str, labels: str, task: str, limit: int | None) -> tuple[dict[str, Any], Path]:
        from mllm_mer.evaluate import EvaluateConfig, run_evaluation

        out = Path(self.config.runs_dir) / f"batch-{time.strftime('%Y%m%d-%H%M%S')}-{threading.get_ident() % 10000}"
        cfg = EvaluateConfig(dataset="manifest", data_dir=manifest, split=None, out=str(out), limit=limit,
                             dataset_options={"labels": labels, "task": task}, labels=labels,
                             prompt=PromptConfig(labels=labels, template="label_only"),
                             media=self.media_settings(),
                             backend=self.config.backend_config())
        backend = self.backend
        with self._lock:
            metrics = run_evaluation(cfg, backend=backend, progress=True)
        return metrics, out
