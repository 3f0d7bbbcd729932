"""What the Gradio front end calls: analyse clips (batched), chat about one, run a split.

Holds one backend for the process, loaded in the background at start (the page is up at
once and says "loading"), and serialises calls into it (engines are not thread-safe);
concurrent analyse requests arrive batched, so they reach vLLM as one batch.
"""
from __future__ import annotations

import json
import shutil
import threading
import time
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from mllm_mer.app.locked_stream import locked_stream
from mllm_mer.app.requests import (
    AnalyseRequest,
    Analysis,
    BatchOptions,
    BatchRun,
    ConversationRun,
    answer_text,
    batch_model,
)
from mllm_mer.app.uploads import read_in_child, unpack_zip, user_paths
from mllm_mer.config import AppConfig, EvaluateConfig, PromptConfig, RunConfig, build
from mllm_mer.conversation.context import DEFAULT_CONTEXT_LABELS
from mllm_mer.conversation.timeline import recording_end, timeline_rows, write_timeline
from mllm_mer.conversation.transcripts import TranscriptError, asr_utterances, read_transcript, utterance_samples
from mllm_mer.core.types import MediaSettings, Prompt, Sample, ServiceError, Turn
from mllm_mer.evaluation.records import for_download
from mllm_mer.media import MediaError
from mllm_mer.pipeline.answer import answer_prepared, answer_run
from mllm_mer.pipeline.build import Run, build_run, open_backend
from mllm_mer.pipeline.dialogue import classify_dialogues
from mllm_mer.stages.prepare import Prepared, prepare
from mllm_mer.strategies import RunContext

CHAT_SYSTEM_NOTE = ("Answer the user's follow-up question about the clip in plain sentences, "
                    "consistent with the evidence and your earlier answer.")
CHAT_REASONING_NOTE = " First reason briefly inside <reasoning></reasoning>, then answer."
MANIFEST_SUFFIXES = (".csv", ".jsonl")
MAX_QUESTION_CHARS = 2000  # a chat question; the conversation carried along stays under ten of them


class Service:
    """One backend for the process; calls into it are serialised."""

    def __init__(self, config: AppConfig, backend=None):
        self.config = config
        self._backend = backend
        self._lock = threading.Lock()
        self._loaded = threading.Event()
        self._load_error: str | None = None
        self._runs: dict[tuple, Run] = {}
        self.activity = ""  # what the model is doing now (the page shows it beside the status)
        if backend is not None:
            self._loaded.set()

    def housekeep(self, keep: tuple[Path, ...] = ()) -> None:
        """Bound the runs folder: outputs older than `keep_hours` go, then the oldest past `keep_gb`
        (Batch runs, analyses and conversations each); `keep` stays (what a request just made)."""
        from mllm_mer.core.housekeeping import prune

        ui = self.config.ui
        runs = Path(ui.runs_dir).expanduser().resolve()
        age, size = ui.keep_hours * 3600, int(ui.keep_gb * 1024**3)
        for folder in (runs / "analyses", runs / "conversations"):
            prune(folder, age, size, keep)
        prune(runs, age, size, (runs / "analyses", runs / "conversations", *keep))

    # -- the model --------------------------------------------------------------------------
    def start_loading(self) -> threading.Thread:
        """Load the backend in the background; requests wait for it, the status says how it goes."""
        thread = threading.Thread(target=self._load, name="model-loader", daemon=True)
        thread.start()
        return thread

    def load(self) -> None:
        """Load the backend now, in this thread (vLLM wants the main thread for its signal handlers)."""
        self._load()

    def _load(self) -> None:
        try:
            with self._lock:
                if self._backend is None:
                    self._backend = open_backend(self.config.backend)  # held for the process; closed by close()
        except Exception as error:  # shown in the UI; every request then fails with it
            self._load_error = f"{type(error).__name__}: {error}"
        finally:
            self._loaded.set()

    @property
    def status(self) -> str:
        if self._load_error:
            return f"failed: {self._load_error}"
        if not self._loaded.is_set():
            return "loading"
        return f"ready · {self.activity}" if self.activity else "ready"

    def _working(self, stage: str) -> None:
        self.activity = stage

    @property
    def backend(self):
        if not self._loaded.is_set() and self._backend is None and not self._lock.locked():
            self._load()  # nobody started loading: load now (tests, scripts)
        self._loaded.wait()
        if self._load_error:
            raise ServiceError(f"the model could not be loaded: {self._load_error}")
        return self._backend

    def close(self) -> None:
        backend, self._backend = self._backend, None
        if backend is not None:
            backend.close()

    def run(self, labels: str | None = None, template: str | None = None,
            modalities: tuple[str, ...] | None = None, mode: str | None = None, strategy: str | None = None,
            adapter: str | None = None, reasoning: str | None = None) -> RunContext:
        """The run for what the UI chose: its prompt, strategy and resources (the demonstration index when the
        app was given a split to retrieve from), resolved and built once per choice."""
        key = (labels or self.config.prompt.labels, template or self.config.prompt.template,
               tuple(modalities) if modalities else None, mode or self.config.prompt.mode,
               strategy or self.config.strategy.strategy, reasoning or self.config.prompt.reasoning)
        if key not in self._runs:
            prompt = replace(self.config.prompt, labels=key[0], template=key[1],
                             modalities=list(key[2]) if key[2] else self.config.prompt.modalities, mode=key[3],
                             reasoning=key[5])
            self._runs[key] = build_run(replace(self.config, prompt=prompt,
                                                strategy=replace(self.config.strategy, strategy=key[4])))
        return self._runs[key].for_adapter(adapter, self._working)

    def adapters(self) -> list[str]:
        return list((self._backend.adapters if self._backend is not None else None) or self.config.model.adapters)

    # -- analyse ------------------------------------------------------------------------------
    @staticmethod
    def _groups(requests: list[AnalyseRequest]) -> dict[tuple, list[int]]:
        """Request indices by prompt settings and adapter (the arguments of `run`): one backend batch each."""
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault((r.labels, r.template, r.modalities, r.mode, r.strategy, r.adapter, r.reasoning),
                              []).append(i)
        return groups

    def reason_many(self, requests: list[AnalyseRequest]) -> list[Prepared | None]:
        """The first half of `analyse_many` where the run reasons once per sample first (`reasons_once`): each sample
        prepared and its reasoning written (on its prompt), to show before the answer; None elsewhere."""
        from mllm_mer.stages.reasoning import reason

        backend = self.backend
        found: list[Prepared | None] = [None] * len(requests)
        for key, indices in self._groups(requests).items():
            run = self.run(*key)
            if run.setup.reasoning is None or not run.strategy.reasons_once:
                continue
            with self._lock:
                try:
                    prepared = prepare([self._sample(requests[i]) for i in indices], run.setup, run.on_stage,
                                       run.resources)
                    ready = [p for p in prepared if p.prompt is not None]
                    run.on_stage(f"reasoning for {len(ready)}")
                    thought = iter(reason(backend, [p.prompt for p in ready], run.adapter) if ready else [])
                finally:
                    self.activity = ""
            for i, p in zip(indices, prepared, strict=True):
                if p.prompt is not None and isinstance(done := next(thought), Prompt):  # refused: answered anew
                    p.prompt = done
                found[i] = p
        return found

    def analyse_many(self, requests: list[AnalyseRequest], reasoned: list[Prepared | None] | None = None
                     ) -> list[Analysis]:
        """Requests grouped by prompt settings and adapter; each group is one backend batch. `reasoned`:
        what `reason_many` made of them (those samples are answered after the reasoning they already have)."""
        backend = self.backend
        results: list[Analysis | None] = [None] * len(requests)
        for key, indices in self._groups(requests).items():
            run = self.run(*key)
            setup, adapter = run.setup, key[5]
            ready = [reasoned[i] for i in indices] if reasoned else []
            with self._lock:
                try:
                    if ready and all(p is not None for p in ready):
                        answered = answer_prepared(backend, ready, run)
                    else:
                        answered = answer_run(backend, [self._sample(requests[i]) for i in indices], run)
                finally:
                    self.activity = ""
            for i, a in zip(indices, answered, strict=True):
                request = requests[i]
                prediction = a.prediction
                if prediction.error:
                    prediction.error = user_paths(prediction.error, request.names)
                clip = request.names.get(request.video or "", "") or ("the transcript" if request.transcript
                                                                      else "the clip")
                results[i] = Analysis(prediction, a.prompt, setup.scheme.name, adapter, clip,
                                      calibrated=bool(setup.temperatures),
                                      traces=_traces(request, a.prompt, setup.media))
        return results  # type: ignore[return-value]

    @staticmethod
    def _sample(request: AnalyseRequest) -> Sample:
        context = tuple(Turn(speaker=str(s or "").strip() or "Speaker", text=str(t).strip())
                        for s, t in request.context if str(t or "").strip())
        return Sample(id=f"upload-{uuid.uuid4().hex[:8]}", video=request.video or None, audio=request.audio or None,
                      transcript=request.transcript.strip() or None, context=context,
                      physio=request.physio or None)

    # -- chat ---------------------------------------------------------------------------------
    def chat(self, analysis: Analysis, history: list[tuple[str, str]], question: str,
             reasoning: str | None = None) -> Iterator[str]:
        """Stream an answer to a follow-up question, with the clip and the earlier answer in context (after its
        reasoning, with `reasoning` before|native)."""
        prompt = self.think(self.chat_prompt(analysis, history, question, reasoning), analysis.adapter)
        yield from self.stream_chat(prompt, analysis.adapter)

    def chat_prompt(self, analysis: Analysis, history: list[tuple[str, str]], question: str,
                    reasoning: str | None = None) -> Prompt:
        """The follow-up's prompt; `reasoning` before|native: it reasons first (the run's bound)."""
        from mllm_mer.pipeline.resolve import reasoning_for

        if analysis.prompt is None:
            raise MediaError("the clip", "was not analysed successfully; analyse a clip first")
        if len(question) > MAX_QUESTION_CHARS:
            raise ValueError(f"the question is {len(question)} characters; at most {MAX_QUESTION_CHARS}")
        if sum(len(u) + len(a) for u, a in history) > MAX_QUESTION_CHARS * 10:
            raise ValueError("the conversation is too long to carry on; analyse the clip again to start afresh")
        block = reasoning_for(replace(self.config.prompt, reasoning=reasoning or "none"), self.config.model.model)
        note = CHAT_SYSTEM_NOTE + (CHAT_REASONING_NOTE if block is not None and block.order == "before" else "")
        messages = [dict(m) for m in analysis.prompt.messages]
        messages[0] = {"role": "system", "content": messages[0]["content"] + "\n\n" + note}
        messages.append({"role": "assistant", "content": analysis.prediction.raw or answer_text(analysis)})
        for user, assistant in history:
            messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
        messages.append({"role": "user", "content": question})
        return Prompt(sample_id="chat", messages=messages, schema={}, label_sets=analysis.prompt.label_sets,
                      with_rationale=False, media=analysis.prompt.media, reasoning=block)

    def think(self, prompt: Prompt, adapter: str | None = None) -> Prompt:
        """The prompt with its reasoning written (as it is when it does not reason)."""
        if prompt.reasoning is None or prompt.thought is not None:
            return prompt
        backend = self.backend
        with self._lock:
            [thought] = backend.think([prompt], adapter=adapter)
        return replace(prompt, thought=thought)

    def stream_chat(self, prompt: Prompt, adapter: str | None = None) -> Iterator[str]:
        """The chat answer as a stream of the text so far (after the prompt's reasoning, when it has one)."""
        backend = self.backend
        yield from locked_stream(self._lock, lambda: backend.chat(prompt, adapter=adapter,
                                                                  max_new_tokens=self.config.ui.chat_max_new_tokens))

    # -- conversation -------------------------------------------------------------------------
    def conversation(self, video: str | None, audio: str | None, transcript: str | None, labels: str | None = None,
                     template: str | None = None, context_labels: str = DEFAULT_CONTEXT_LABELS,
                     names: dict[str, str] | None = None, on_utterance=None, reasoning: str | None = None
                     ) -> ConversationRun:
        """A recording + transcript file (or ASR's speech segments) -> its per-speaker emotion timeline.
        `on_utterance(done, total)` is told after each lockstep chunk; `reasoning`: the answer order."""
        names = names or {}
        try:
            if transcript:
                utterances = read_transcript(transcript)
            elif self.config.media.asr_model and (audio or video):
                utterances = asr_utterances(audio or video, self.config.media.asr_model)
            else:
                raise ValueError("give a transcript file (.srt, .vtt or .jsonl); without one, the app needs an ASR "
                                 "model (--asr-model) to find the utterances")
        except (TranscriptError, MediaError) as error:
            raise ValueError(user_paths(str(error), names)) from None
        samples = utterance_samples(utterances, video or None, audio or None)
        run = self.run(labels, template, reasoning=reasoning)
        task = run.setup.scheme.label_sets[0].task
        prompts: dict[str, Any] = {}

        def done_turns(chunk, answered) -> None:
            prompts.update({s.id: a.prompt for s, a in zip(chunk, answered, strict=True)})
            if on_utterance:
                on_utterance(len(prompts), len(samples))

        backend = self.backend
        with self._lock:
            try:
                [predictions] = classify_dialogues(backend, [samples], run, context_labels, task=task,
                                                   on_turn=done_turns)
            finally:
                self.activity = ""
        for prediction in predictions:
            if prediction.error:
                prediction.error = user_paths(prediction.error, names)
        rows = timeline_rows(samples, predictions, task)
        out = (Path(self.config.ui.runs_dir).expanduser().resolve() / "conversations"
               / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}")
        write_timeline(rows, out, task, context_labels, recording_end(samples))
        self.housekeep(keep=(out,))
        frames = [list(prompts[s.id].media.frames) if prompts.get(s.id) else [] for s in samples]
        return ConversationRun(rows, frames, out, [p.reasoning for p in predictions])

    # -- batch --------------------------------------------------------------------------------
    def run_batch(self, upload: str, labels: str | None, task: str, limit: int | None, template: str | None = None,
                  data_folder: str | None = None, options: BatchOptions | None = None) -> BatchRun:
        """Evaluate an uploaded manifest: a zip of manifest + clips, or a CSV/JSONL whose relative media
        paths resolve in one of the data folders the operator allowed at launch. Media may only come
        from inside that folder (or the unpacked zip)."""
        from mllm_mer.evaluation.runner import run_evaluation

        options = options or BatchOptions()
        name = f"batch-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        out = Path(self.config.ui.runs_dir).expanduser().resolve() / name
        out.mkdir(parents=True)
        self.housekeep(keep=(out,))
        try:
            manifest, root = self._batch_input(Path(upload), out, data_folder)
            read_in_child(manifest)  # untrusted: parsed first where a crashing reader cannot end the app
        except BaseException:  # a refused upload leaves nothing behind
            shutil.rmtree(out, ignore_errors=True)
            raise
        base = self.config
        media = replace(base.media)
        data = build(EvaluateConfig, dataset="manifest", data_dir=str(manifest), task=task,
                     dataset_options={"media_root": str(root)}, **(options.columns or {})).data
        cfg = EvaluateConfig(model=batch_model(base.model, options.adapter), engine=base.engine, client=base.client,
                             strategy=base.strategy, retrieval=base.retrieval,
                             prompt=replace(PromptConfig(), labels=labels or base.prompt.labels,
                                            template=template or base.prompt.template,
                                            mode=options.mode or base.prompt.mode,
                                            modalities=list(options.modalities) if options.modalities
                                            else base.prompt.modalities,
                                            reasoning=options.reasoning or base.prompt.reasoning,
                                            max_reasoning_tokens=base.prompt.max_reasoning_tokens),
                             media=media, data=data, run=RunConfig(out=str(out / "run"), limit=limit))
        backend = self.backend
        try:
            with self._lock:
                metrics = run_evaluation(cfg, backend=backend, progress=True, media_roots=(str(root),))
        finally:  # an unpacked upload is not kept past its run (the run's own outputs are)
            shutil.rmtree(out / "input", ignore_errors=True)
        for failure in metrics.get("failures") or []:  # the user's own paths, as in their manifest
            failure["error"] = str(failure.get("error") or "").replace(f"{root}/", "")
        archive = out / "run.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
            for path in sorted((out / "run").iterdir()):
                if path.name == "run.json":  # the operator's launch command and host are not the user's to read
                    z.writestr(path.name, json.dumps(for_download(json.loads(path.read_text())), indent=2) + "\n")
                else:
                    z.write(path, path.name)
        return BatchRun(metrics, out / "run", archive)

    def _batch_input(self, upload: Path, out: Path, data_folder: str | None) -> tuple[Path, Path]:
        """(manifest, the only folder its media may come from, where its relative paths resolve)."""
        if upload.suffix.lower() == ".zip":
            root = out / "input"
            unpack_zip(upload, root)
            manifests = [p for p in root.rglob("*") if p.suffix.lower() in MANIFEST_SUFFIXES]
            if len(manifests) != 1:
                raise ValueError(f"{upload.name}: the zip must hold exactly one .csv or .jsonl manifest "
                                 f"(found {len(manifests)})")
            return manifests[0], manifests[0].parent
        if upload.suffix.lower() not in MANIFEST_SUFFIXES:
            raise ValueError(f"{upload.name}: upload a .csv/.jsonl manifest or a .zip of manifest + clips")
        allowed = [Path(d).resolve() for d in self.config.ui.data_dirs]
        if data_folder:
            folder = Path(data_folder).resolve()
            if folder not in allowed:
                raise ValueError("that data folder is not one this app may read")
        elif len(allowed) == 1:
            folder = allowed[0]
        else:
            folder = out / "no-media"  # a text-only manifest: no media may be read at all
            folder.mkdir()
        manifest = out / f"manifest{upload.suffix.lower()}"
        manifest.write_bytes(upload.read_bytes())
        return manifest, folder


def _traces(request: AnalyseRequest, prompt: Prompt | None, settings: MediaSettings) -> Any:
    """The signal window the prompt read, drawn for the page: the prompt's own picture (--physio-view plot|both),
    else drawn here; None when no signals were read (none given, "physio" not a modality, or the sample failed)."""
    media = prompt.media if prompt is not None else None
    if not request.physio or media is None or media.physio_cues is None:
        return None
    if media.physio_plot is not None:
        return media.physio_plot
    from mllm_mer.media.physio import physio_plot

    try:  # read once already for the prompt (kept in the reader's recent files): a picture only
        return physio_plot(Sample(id="traces", physio=request.physio), settings, [])
    except ValueError:  # MediaError among them: the answer stands without its picture
        return None
