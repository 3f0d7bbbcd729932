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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mllm_mer.config import AppConfig, EvaluateConfig, PromptConfig, RunConfig, build
from mllm_mer.conversation.context import DEFAULT_CONTEXT_LABELS
from mllm_mer.conversation.timeline import recording_end, timeline_rows, write_timeline
from mllm_mer.conversation.transcripts import TranscriptError, asr_utterances, read_transcript, utterance_samples
from mllm_mer.core.types import Prediction, Prompt, Sample, ServiceError, Turn
from mllm_mer.evaluation.records import for_download
from mllm_mer.media import MediaError
from mllm_mer.pipeline.answer import answer_run
from mllm_mer.pipeline.build import Run, build_run, open_backend
from mllm_mer.pipeline.dialogue import classify_dialogues
from mllm_mer.strategies import RunContext

CHAT_SYSTEM_NOTE = ("Answer the user's follow-up question about the clip in plain sentences, "
                    "consistent with the evidence and your earlier answer.")
MANIFEST_SUFFIXES = (".csv", ".jsonl")
MAX_QUESTION_CHARS = 2000  # a chat question; the conversation carried along stays under ten of them
MAX_UNZIPPED_BYTES = 2 * 1024 ** 3
UNZIP_RATIO, UNZIP_ALLOWANCE = 20, 64 * 1024 ** 2  # a zip may unpack to 20x its size, or to 64 MiB


@dataclass
class AnalyseRequest:
    video: str | None = None
    audio: str | None = None
    transcript: str = ""
    context: list[tuple[str, str]] = field(default_factory=list)  # (speaker, text)
    labels: str | None = None  # default: the app's (or the adapter's) label set
    template: str | None = None
    adapter: str | None = None
    modalities: tuple[str, ...] | None = None  # None: the app's
    mode: str = "generate"  # generate | score
    strategy: str | None = None  # single | agent (None: the app's)
    names: dict[str, str] = field(default_factory=dict)  # server path -> the name the user gave it


@dataclass
class Analysis:
    prediction: Prediction
    prompt: Prompt | None
    labels: str
    adapter: str | None
    clip: str = "the clip"  # the user's name for what was analysed
    calibrated: bool = False  # probabilities temperature-scaled (--calibration)


@dataclass
class ConversationRun:
    rows: list[dict[str, Any]]  # timeline rows (dialogue.timeline_rows), in time order
    frames: list[list[Any]]  # the frames each utterance's prompt showed
    out: Path  # timeline.png / .md / .jsonl


@dataclass(frozen=True)
class BatchOptions:
    """What a Batch run may choose beyond the label set and template; None: the app's own setting."""

    adapter: str | None = None  # None: the base model
    mode: str | None = None
    modalities: tuple[str, ...] | list[str] | None = None
    columns: dict[str, str] | None = None  # manifest column options (id_col, text_col, ...); None: the defaults


@dataclass
class BatchRun:
    metrics: dict[str, Any]
    out: Path
    archive: Path  # the whole run folder as one zip


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
            adapter: str | None = None) -> RunContext:
        """The run for what the UI chose: its prompt, strategy and resources (the demonstration index when the
        app was given a split to retrieve from), resolved and built once per choice."""
        key = (labels or self.config.prompt.labels, template or self.config.prompt.template,
               tuple(modalities) if modalities else None, mode or self.config.prompt.mode,
               strategy or self.config.strategy.strategy)
        if key not in self._runs:
            prompt = replace(self.config.prompt, labels=key[0], template=key[1],
                             modalities=list(key[2]) if key[2] else self.config.prompt.modalities, mode=key[3])
            self._runs[key] = build_run(replace(self.config, prompt=prompt,
                                                strategy=replace(self.config.strategy, strategy=key[4])))
        return self._runs[key].for_adapter(adapter, self._working)

    def adapters(self) -> list[str]:
        return list((self._backend.adapters if self._backend is not None else None) or self.config.model.adapters)

    # -- analyse ------------------------------------------------------------------------------
    def analyse_many(self, requests: list[AnalyseRequest]) -> list[Analysis]:
        """Requests grouped by prompt settings and adapter; each group is one backend batch."""
        backend = self.backend
        results: list[Analysis | None] = [None] * len(requests)
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault((r.labels, r.template, r.modalities, r.mode, r.strategy, r.adapter), []).append(i)
        for (labels, template, modalities, mode, strategy, adapter), indices in groups.items():
            run = self.run(labels, template, modalities, mode, strategy, adapter)
            setup = run.setup
            samples = [self._sample(requests[i]) for i in indices]
            with self._lock:
                try:
                    answered = answer_run(backend, samples, run)
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
                                      calibrated=bool(setup.temperatures))
        return results  # type: ignore[return-value]

    @staticmethod
    def _sample(request: AnalyseRequest) -> Sample:
        context = tuple(Turn(speaker=str(s or "").strip() or "Speaker", text=str(t).strip())
                        for s, t in request.context if str(t or "").strip())
        return Sample(id=f"upload-{uuid.uuid4().hex[:8]}", video=request.video or None, audio=request.audio or None,
                      transcript=request.transcript.strip() or None, context=context)

    # -- chat ---------------------------------------------------------------------------------
    def chat(self, analysis: Analysis, history: list[tuple[str, str]], question: str) -> Iterator[str]:
        """Stream an answer to a follow-up question, with the clip and the earlier answer in context."""
        if analysis.prompt is None:
            raise MediaError("the clip", "was not analysed successfully; analyse a clip first")
        if len(question) > MAX_QUESTION_CHARS:
            raise ValueError(f"the question is {len(question)} characters; at most {MAX_QUESTION_CHARS}")
        if sum(len(u) + len(a) for u, a in history) > MAX_QUESTION_CHARS * 10:
            raise ValueError("the conversation is too long to carry on; analyse the clip again to start afresh")
        messages = [dict(m) for m in analysis.prompt.messages]
        messages[0] = {"role": "system", "content": messages[0]["content"] + "\n\n" + CHAT_SYSTEM_NOTE}
        messages.append({"role": "assistant", "content": analysis.prediction.raw or answer_text(analysis)})
        for user, assistant in history:
            messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
        messages.append({"role": "user", "content": question})
        chat_prompt = Prompt(sample_id="chat", messages=messages, schema={}, label_sets=analysis.prompt.label_sets,
                             with_rationale=False, media=analysis.prompt.media)
        backend = self.backend
        with self._lock:
            yield from backend.chat(chat_prompt, adapter=analysis.adapter,
                                    max_new_tokens=self.config.ui.chat_max_new_tokens)

    # -- conversation -------------------------------------------------------------------------
    def conversation(self, video: str | None, audio: str | None, transcript: str | None, labels: str | None = None,
                     template: str | None = None, context_labels: str = DEFAULT_CONTEXT_LABELS,
                     names: dict[str, str] | None = None, on_utterance=None) -> ConversationRun:
        """A recording + transcript file (or ASR's speech segments) -> its per-speaker emotion timeline.
        `on_utterance(done, total)` is told after each lockstep chunk."""
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
        run = self.run(labels, template)
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
        return ConversationRun(rows, frames, out)

    # -- batch --------------------------------------------------------------------------------
    def run_batch(self, upload: str, labels: str | None, task: str, limit: int | None, template: str | None = None,
                  data_folder: str | None = None, options: BatchOptions = BatchOptions()) -> BatchRun:
        """Evaluate an uploaded manifest: a zip of manifest + clips, or a CSV/JSONL whose relative media
        paths resolve in one of the data folders the operator allowed at launch. Media may only come
        from inside that folder (or the unpacked zip)."""
        from mllm_mer.evaluation.runner import run_evaluation

        name = f"batch-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        out = Path(self.config.ui.runs_dir).expanduser().resolve() / name
        out.mkdir(parents=True)
        self.housekeep(keep=(out,))
        try:
            manifest, root = self._batch_input(Path(upload), out, data_folder)
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
                                            else base.prompt.modalities),
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


def unpack_zip(archive: Path, root: Path) -> None:
    """Extract a zip safely: no absolute or `..` member, no link, at most MAX_UNZIPPED_BYTES."""
    try:
        with zipfile.ZipFile(archive) as z:
            members = z.infolist()
            # Clips barely compress: a zip that unpacks to many times its size is a bomb, not a batch.
            most = min(MAX_UNZIPPED_BYTES, max(UNZIP_ALLOWANCE, UNZIP_RATIO * archive.stat().st_size))
            if sum(m.file_size for m in members) > most:
                raise ValueError(f"{archive.name}: unpacks to more than {most // 1024 ** 2} MiB (at most "
                                 f"{UNZIP_RATIO}x the upload, or {UNZIP_ALLOWANCE // 1024 ** 2} MiB)")
            root.mkdir(parents=True)
            for member in members:
                target = (root / member.filename).resolve()
                if not target.is_relative_to(root.resolve()) or (member.external_attr >> 16) & 0o170000 == 0o120000:
                    raise ValueError(f"{archive.name}: member {member.filename!r} points outside the archive")
                z.extract(member, root)
    except zipfile.BadZipFile:
        raise ValueError(f"{archive.name}: not a readable zip file") from None


def user_paths(text: str, names: dict[str, str]) -> str:
    """An error message with server paths replaced by the names the user gave the files."""
    for path, name in names.items():
        if path:
            text = text.replace(path, name)
    return text


def answer_text(analysis: Analysis) -> str:
    return ", ".join(f"{task}: {tp.label}" for task, tp in analysis.prediction.tasks.items())


def batch_model(model, adapter: str | None):
    """The model settings of a Batch run: the chosen adapter first (a run answers with its first), or none."""
    if adapter is None:
        return replace(model, adapter=[])
    adapters = model.adapters
    if adapter not in adapters:
        raise ValueError(f"unknown adapter {adapter!r}; this app serves: {', '.join(adapters) or 'none'}")
    return replace(model, adapter=[f"{adapter}={adapters[adapter]}",
                                   *(f"{n}={p}" for n, p in adapters.items() if n != adapter)])

