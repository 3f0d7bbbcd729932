"""What the Gradio front end calls: analyse clips (batched), chat about one, run a split.

Holds one backend for the process, loaded on first use, and serialises calls into
it (engines are not thread-safe); concurrent analyse requests arrive batched, so
they reach vLLM as one batch.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mllm_mer.config import AppConfig, EvaluateConfig, PromptConfig, RunConfig, build
from mllm_mer.media import MediaError
from mllm_mer.types import Prediction, Prompt, PromptSetup, Sample, Turn

CHAT_SYSTEM_NOTE = ("Answer the user's follow-up question about the clip in plain sentences, "
                    "consistent with the evidence and your earlier answer.")


@dataclass
class AnalyseRequest:
    video: str | None = None
    audio: str | None = None
    transcript: str = ""
    context: list[tuple[str, str]] = field(default_factory=list)  # (speaker, text)
    labels: str | None = None  # default: the app's (or the adapter's) label set
    template: str | None = None
    adapter: str | None = None


@dataclass
class Analysis:
    prediction: Prediction
    prompt: Prompt | None
    labels: str
    adapter: str | None


class Service:
    """One backend for the process, loaded on first use; calls into it are serialised."""

    def __init__(self, config: AppConfig, backend=None):
        self.config = config
        self._backend = backend
        self._lock = threading.Lock()
        self._setups: dict[tuple, PromptSetup] = {}

    @property
    def backend(self):
        with self._lock:
            if self._backend is None:
                from mllm_mer.backends import load_backend

                self._backend = load_backend(self.config.backend)
            return self._backend

    def close(self) -> None:
        backend, self._backend = self._backend, None
        if backend is not None:
            backend.close()

    def setup(self, labels: str | None = None, template: str | None = None) -> PromptSetup:
        """The resolved prompt for a label set and template chosen in the UI (cached)."""
        from mllm_mer.resolve import resolve_prompt

        key = (labels or self.config.prompt.labels, template or self.config.prompt.template)
        if key not in self._setups:
            prompt = replace(self.config.prompt, labels=key[0], template=key[1])
            self._setups[key] = resolve_prompt(self.config.model, prompt, self.config.media)
        return self._setups[key]

    def adapters(self) -> list[str]:
        return list(getattr(self._backend, "adapters", None) or self.config.model.adapters)

    # -- analyse ------------------------------------------------------------------------------
    def analyse_many(self, requests: list[AnalyseRequest]) -> list[Analysis]:
        """Requests grouped by (labels, template, adapter); each group is one backend batch."""
        from mllm_mer.pipeline import answer

        backend = self.backend
        results: list[Analysis | None] = [None] * len(requests)
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault((r.labels, r.template, r.adapter), []).append(i)
        for (labels, template, adapter), indices in groups.items():
            setup = replace(self.setup(labels, template), mode="generate")
            samples = [self._sample(requests[i], n) for n, i in enumerate(indices)]
            with self._lock:
                answered = answer(backend, samples, setup, adapter)
            for i, a in zip(indices, answered, strict=True):
                results[i] = Analysis(a.prediction, a.prompt, setup.scheme.name, adapter)
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
                                    max_new_tokens=self.config.ui.chat_max_new_tokens)

    # -- batch --------------------------------------------------------------------------------
    def run_batch(self, manifest: str, labels: str | None, task: str, limit: int | None
                  ) -> tuple[dict[str, Any], Path]:
        from mllm_mer.evaluate import run_evaluation

        out = Path(self.config.ui.runs_dir) / f"batch-{time.strftime('%Y%m%d-%H%M%S')}-{threading.get_ident() % 10000}"
        base = self.config
        cfg = EvaluateConfig(model=base.model, engine=base.engine, client=base.client,
                             prompt=PromptConfig(labels=labels or base.prompt.labels, template="label_only"),
                             media=base.media, data=build(EvaluateConfig, dataset="manifest", data_dir=manifest,
                                                          task=task).data,
                             run=RunConfig(out=str(out), limit=limit))
        backend = self.backend
        with self._lock:
            metrics = run_evaluation(cfg, backend=backend, progress=True)
        return metrics, out
