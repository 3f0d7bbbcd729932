"""The one config tree: small sections, composed per verb. Each field is documented once, here.

A section is a dataclass of leaf options (`ModelConfig`, `PromptConfig`, ...). A verb's
config (`EvaluateConfig`, `ServeConfig`, ...) is a dataclass whose fields are sections.
The command line (`mllm_mer.cli`), YAML files and `key=value` overrides are all generated
from these classes: a flat key (`dtype`) or a section key (`model.dtype`, or a nested
YAML mapping) reaches the same field. Leaf names are unique within a verb.
"""
from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from mllm_mer.models import DEFAULT_MODEL


def option(default: Any = None, help: str = "", **extra: Any) -> Any:  # noqa: A002 (argparse's word)
    """A documented field; mutable defaults are copied per instance."""
    metadata = {"help": help, **extra}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


# -- sections ----------------------------------------------------------------------------------

@dataclass
class ModelConfig:
    """Which model answers, with which adapters, on which backend."""

    model: str = option(DEFAULT_MODEL, "hub id or local checkpoint directory")
    adapter: list[str] = option([], "LoRA adapter: PATH or NAME=PATH (repeatable); a trained adapter's "
                                    "prompt settings come with it")
    backend: Literal["transformers", "vllm", "openai"] = option("transformers", "who runs the model")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = option(
        "auto", "weights dtype (auto: bf16 on GPU, fp32 on CPU)")
    max_new_tokens: int = option(1024, "answer length cap (the constrained answer needs < 2048 worst case)")
    forward_batch_size: int = option(8, "transformers backend: samples per forward pass")
    trust_remote_code: bool = option(False, "run model code from the hub (never needed for the supported families)")
    seed: int = option(0, "sampling/engine seed")

    @property
    def adapters(self) -> dict[str, str]:
        """Adapter name -> directory (a bare path is named after its directory)."""
        adapters = {}
        for value in self.adapter:
            name, sep, path = value.partition("=")
            if not sep:
                name, path = Path(value).name or "adapter", value
            adapters[name] = path
        return adapters


@dataclass
class EngineConfig:
    """The vLLM engine (in process, or behind `serve`)."""

    max_model_len: int = option(8192, "context length the engine reserves")
    gpu_memory_utilization: float = option(0.85, "GPU memory share for weights and KV cache")
    kv_cache_gb: int = option(1, "CPU build: KV cache space in GiB")
    tensor_parallel_size: int = option(1, "GPUs one replica is split over")
    data_parallel_size: int = option(1, "engine replicas (vLLM data parallelism)")
    enforce_eager: bool = option(False, "skip graph capture/compilation: faster start, slower decode")
    max_lora_rank: int = option(64, "largest adapter rank the engine accepts")
    max_images: int = option(8, "images per prompt (beyond the first: an agent's look observations)")
    engine_args: dict = option({}, "further vllm EngineArgs fields, as a YAML/JSON mapping (passed through)")


@dataclass
class ClientConfig:
    """An OpenAI-compatible server (backend openai)."""

    base_url: list[str] = option([], "server URL, e.g. http://127.0.0.1:8000; repeatable: requests are spread "
                                     "over several servers")
    api_key: str | None = option(None, "server key (prefer the MLLM_MER_API_KEY environment variable)")
    timeout_s: float = option(120.0, "per-request timeout")
    retries: int = option(2, "retries of a failed request")
    concurrency: int = option(8, "requests in flight at once, per server (the server batches them continuously)")

    def __post_init__(self):
        if isinstance(self.base_url, str):  # one URL given as a plain value (YAML, Python)
            self.base_url = [self.base_url]


@dataclass
class PromptConfig:
    """What to ask. Unset fields come from the adapter's saved prompt, then the defaults."""

    labels: str | None = option(None, "label set name or YAML file (default: the dataset's own, else meld)")
    template: str | None = option(None, "zero_shot | label_only | few_shot | reasoning | path to a .jinja "
                                        "(default zero_shot)")
    modalities: list[str] | None = option(None, "subset of text,video,audio (default all)")
    mode: Literal["generate", "score"] = option(
        "generate", "generate: constrained JSON with rationale; score: label probabilities only")
    calibration: str | None = option(None, "calibration.json from `mllm-mer calibrate DEV_RUN`: rescales label "
                                           "probabilities (the label set must match)")
    max_text_chars: int = option(6000, "transcript + context budget per sample; longer text is cut (latest "
                                       "turns kept) and the prediction notes it")


@dataclass
class StrategyConfig:
    """How the model reaches its answer: one pass, or an agent that gathers evidence first; self-consistency."""

    strategy: Literal["single", "agent", "fusion"] = option(
        "single", "single: one prompt, one answer; agent: call tools (look, listen, recall, context), then "
                  "answer; fusion: score one prompt per modality plus the joint one, then fuse")
    max_steps: int = option(3, "agent: actions per sample at most; the last one may only answer")
    tools: list[str] = option(["look", "listen", "recall", "context"], "agent: tools offered (each where it "
                                                                        "applies)")
    look_frames: int = option(4, "agent: frames one look may ask for (all looks: at most max_frames)")
    samples: int = option(1, "self-consistency: answers drawn per sample and voted (1: greedy, no vote)")
    temperature: float = option(0.7, "self-consistency: sampling temperature of the draws")
    fuser: Literal["mean", "product", "entropy", "gate"] = option(
        "entropy", "fusion: mean, product of experts, entropy-weighted (confident modalities weigh more), or "
                   "gate (a learned gate: --fusion)")
    fusion: str | None = option(None, "fusion.json from `mllm-mer fit-fusion DEV_RUN` (the gate fuser)")
    experts: Literal["singles", "all"] = option("singles", "fusion: experts per modality plus the joint prompt, or "
                                                           "every non-empty modality subset (an ablation)")


@dataclass
class RetrievalConfig:
    """Labelled demonstrations: the `retrieved` template and the agent's recall tool."""

    retrieve_split: str | None = option("train", "labelled split to retrieve from (never includes the sample "
                                                 "itself or its dialogue)")
    retrieve_dataset: str | None = option(None, "dataset of that split (default: the run's)")
    retrieve_data_dir: str | None = option(None, "its folder or manifest (default: the run's)")
    retrieve_k: int = option(4, "demonstrations per prompt (recall may ask for up to this many)")
    retrieve_embedder: str | None = option(None, "sentence-embedding model (transformers id or folder); "
                                                 "default TF-IDF")


@dataclass
class MediaConfig:
    """How clips become frames, transcript and vocal cues. Unset budgets come from the model family."""

    max_frames: int | None = option(None, "frames per clip (default: the model family's)")
    max_pixels: int | None = option(None, "pixel budget per frame (default: the model family's)")
    fps: float | None = option(None, "sample frames at this rate (still at most max_frames)")
    keyframe_snap: float = option(0.25, "move a sampled time onto a keyframe within this fraction of the "
                                        "sampling interval, and skip deblocking (faster decoding); 0 = "
                                        "exact times and pixels")
    vocal_cues: bool = option(True, "describe loudness, pitch, pauses and speech rate from the audio")
    asr_model: str | None = option(None, "Whisper id or directory, used when no transcript is given")
    media_cache_gb: float = option(2.0, "decoded frames kept on disk ($MLLM_MER_CACHE/media, default ~/.cache/"
                                        "mllm-mer/media) up to this many GiB, so reruns decode nothing; 0 = off")


@dataclass
class DataConfig:
    """Where samples come from: a bundled benchmark loader or a CSV/JSONL manifest."""

    dataset: str | None = option(None, "meld | iemocap | iemocap4 | mer2024 | ravdess | mosi | mosi7 | mosei | "
                                       "mosei7 | manifest (see `mllm-mer ls datasets`)")
    data_dir: str | None = option(None, "release folder (the CSV/JSONL file for manifest)")
    video_dir: str | None = option(None, "clips folder, if not in the release layout")
    context_window: int | None = option(None, "previous turns given as context (-1: all; default 5)")
    context_labels: Literal["none", "predicted", "gold"] | None = option(
        None, "emotions shown with earlier turns: none, the predicted ones (turns classified in order, dialogues "
              "in lockstep) or gold (oracle information, flagged in reports); default: none for evaluate, "
              "predicted for dialogue")
    id_col: str = option("id", "manifest: column of the sample id")
    text_col: str = option("text", "manifest: column of the transcript")
    label_col: str = option("label", "manifest: column of the gold label")
    video_col: str = option("video", "manifest: column of the clip path")
    speaker_col: str = option("speaker", "manifest: column of the speaker")
    dialogue_col: str = option("dialogue", "manifest: column of the dialogue id")
    task: str = option("emotion", "manifest: the task its label column annotates")
    dataset_options: dict = option({}, "further loader keywords, as a YAML/JSON mapping")

    def loader_options(self, labels: str | None) -> dict[str, Any]:
        """Keywords for `datasets.load_split` (only those the chosen loader takes)."""
        options = dict(self.dataset_options)
        if self.context_window is not None and self.dataset in ("meld", "iemocap", "iemocap4", "manifest"):
            options["context"] = self.context_window
        if self.video_dir:
            options["video_dir"] = self.video_dir
        if self.dataset == "manifest":
            from mllm_mer.datasets.manifest import Columns

            options.setdefault("columns", Columns(
                id=self.id_col, text=self.text_col, label=self.label_col, video=self.video_col,
                speaker=self.speaker_col, dialogue=self.dialogue_col))
            options.setdefault("labels", labels or "meld")
            options.setdefault("task", self.task)
        return options

    def describe(self) -> dict[str, Any]:
        """A JSON-safe summary for run fingerprints."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v not in (None, {}, "")}


@dataclass
class ServerConfig:
    """The OpenAI-compatible vLLM server `serve` runs."""

    host: str = option("127.0.0.1", "bind address (loopback unless asked)")
    port: int = option(8000, "port (0 picks a free one)")
    api_key: str | None = option(None, "key clients must send (prefer the MLLM_MER_API_KEY environment variable)")
    served_name: str | None = option(None, "model name clients use (default: the model's directory/id name)")
    max_videos: int = option(1, "videos per prompt")
    allow_remote_media: bool = option(False, "let requests name http(s) media URLs for the server to fetch "
                                             "(default: inline data: URLs only)")
    startup_timeout_s: float = option(300.0, "give up if not healthy by then")
    log_file: str | None = option(None, "write the server's output here")


@dataclass
class UIConfig:
    """The Gradio front end."""

    host: str = option("127.0.0.1", "bind address (loopback unless asked)")
    port: int = option(7860, "port")
    auth: str | None = option(None, "user:password (prefer the MLLM_MER_APP_AUTH environment variable)")
    max_upload_mb: int = option(200, "largest upload")
    ui_concurrency: int = option(4, "simultaneous requests per event; analyse requests are batched up to 16")
    chat_max_new_tokens: int = option(256, "chat answer length cap")
    runs_dir: str = option("~/.cache/mllm-mer/app-runs", "where Batch runs are written")
    data_dirs: list[str] = option([], "server folders the Batch tab may read clips from (repeatable); "
                                      "without one, Batch takes a zip of manifest + clips")


@dataclass
class PredictInput:
    """The one input `predict` classifies."""

    id: str = option("input", "sample id in the output")
    image: str | None = option(None, "a still image (e.g. a face crop)")
    frames_dir: str | None = option(None, "directory of frames (sorted by name)")
    video: str | None = option(None, "video file")
    audio: str | None = option(None, "audio file (else the video's sound)")
    transcript: str | None = option(None, "what is said (else Whisper with --asr-model)")
    speaker: str | None = option(None, "who says it")
    context: str | None = option(None, "JSONL file of earlier turns: {speaker, text, emotion?}")


@dataclass
class RunConfig:
    """A resumable batch run over one split."""

    split: str | None = option(None, "split to run (see the dataset's loader)")
    out: str | None = option(None, "run directory (rerun the same command to resume)")
    limit: int | None = option(None, "first N samples of the split")
    batch_size: int = option(16, "samples per backend call where answers come back per batch (transformers, "
                                 "score mode, agent, fusion, self-consistency)")
    submission: Literal["continuous", "batched"] = option(
        "continuous", "continuous: each prompt goes to the engine (vllm, openai) as soon as it is ready and each "
                      "answer is saved as it finishes; batched: batch_size at a time")
    prefetch: int = option(32, "samples prepared (media decoded) ahead of the backend; bounds memory")
    media_workers: int | None = option(None, "threads decoding media alongside inference (default: min(4, cores))")
    probabilities: bool = option(False, "generate mode: also score label probabilities (one extra pass)")


@dataclass
class ScaleConfig:
    """Where batch prompting runs: in this process, or on a Ray cluster (pip install "mllm-mer[ray]")."""

    engine: Literal["local", "ray"] = option("local", "local: this process; ray: a Ray Dataset answered by an "
                                                      "actor pool, each actor holding one backend")
    replicas: int = option(1, "ray: backend actors (each loads the model once)")
    ray_address: str | None = option(None, "ray: an existing cluster (e.g. auto, ray://head:10001); default: "
                                           "start a local one")
    replica_gpus: float | None = option(None, "ray: GPUs per replica (default 1 where CUDA is visible, else 0)")
    replica_cpus: float = option(0.5, "ray: CPUs reserved per replica (fractional, so that read and decode "
                                      "tasks still get a core on a small node)")
    task_cpus: float = option(0.25, "ray: CPUs per media-decoding task")


@dataclass
class LoraConfig:
    """The adapter being trained."""

    lora_r: int = option(16, "LoRA rank")
    lora_alpha: int = option(32, "LoRA scaling numerator")
    lora_dropout: float = option(0.05, "dropout on the LoRA path")
    target_modules: list[str] | None = option(None, "module names, or one regex (default: the family's "
                                                    "language-model projections)")
    modules_to_save: list[str] = option([], "fully trained extra modules (not vLLM-servable)")
    allow_vision_lora: bool = option(False, "allow LoRA on the vision tower (vLLM cannot serve it)")
    quantization: str | None = option(None, "null | nf4 (QLoRA, bitsandbytes 4-bit)")
    gradient_checkpointing: bool = option(False, "trade compute for memory")


@dataclass
class OptimConfig:
    """Training loop and checkpoints."""

    output_dir: str | None = option(None, "checkpoints, logs, the final adapter, resolved config, dev metrics")
    train_split: str = option("train", "split trained on")
    dev_split: str | None = option("dev", "best checkpoint is chosen here; never a test split")
    limit_train: int | None = option(None, "first N training samples")
    limit_dev: int | None = option(None, "first N dev samples")
    epochs: float = option(1.0, "passes over the training split")
    max_steps: int = option(-1, "stop after this many steps (-1: epochs decide)")
    learning_rate: float = option(2e-4, "peak learning rate")
    batch_size: int = option(4, "samples per device and step")
    grad_accum: int = option(1, "gradient accumulation steps")
    warmup_ratio: float = option(0.03, "share of steps warming up")
    weight_decay: float = option(0.0, "AdamW weight decay")
    lr_scheduler: str = option("cosine", "transformers scheduler name")
    eval_steps: int | None = option(None, "dev evaluation (and checkpoint) every N steps; unset: every epoch")
    save_steps: int | None = option(None, "checkpoint every N steps (default: eval_steps)")
    save_total_limit: int | None = option(3, "checkpoints kept")
    logging_steps: int = option(10, "log every N steps")
    metric_for_best: str = option("macro_f1", "accuracy | weighted_f1 | macro_f1 | uar, of the first task")
    resume_from_checkpoint: str | None = option(None, "a checkpoint dir, or true for the latest")
    report_to: list[str] = option(["tensorboard"], "transformers loggers")


@dataclass
class TraceConfig:
    """Training the agent on scripted traces: each sample's actions, rendered as the agent sees them."""

    trace_col: str | None = option(None, "manifest column holding each sample's actions (a JSON list of "
                                         "{tool, args}; the answer from the gold labels is added); set: train "
                                         "the agent, loss on every action, observations masked")
    agent_steps: int = option(3, "the --max-steps the agent will run with (its prompt says so)")
    agent_tools: list[str] = option(["look", "listen", "recall", "context"], "the --tools it will be offered")
    agent_look_frames: int = option(4, "the --look-frames it will run with")

    def strategy(self):
        return StrategyConfig(strategy="agent" if self.trace_col else "single", max_steps=self.agent_steps,
                              tools=list(self.agent_tools), look_frames=self.agent_look_frames)


@dataclass
class TinyConfig:
    """A random-weight checkpoint of a real architecture, built offline."""

    dir: str | None = option(None, "where to write it", positional=True)
    arch: Literal["qwen2_vl", "qwen2_5_vl"] = option("qwen2_vl", "architecture")
    size: Literal["tiny", "small"] = option("tiny", "tiny: 0.8 M parameters; small: Qwen2-0.5B text dimensions")
    seed: int = option(0, "weight seed")
    whisper: bool = option(False, "also build a tiny Whisper in DIR/whisper")
    task: str | None = option(None, "also write the synthetic colour x wording task to this folder")
    agent_task: str | None = option(None, "also write the synthetic hidden-window task (with scripted agent "
                                          "traces) to this folder")


@dataclass
class MergeOptions:
    """Folding an adapter into the base weights."""

    out: str | None = option(None, "directory of the merged model")


@dataclass
class CompareOptions:
    runs: list[str] = option([], "run directories", positional=True)


@dataclass
class DialogueOptions:
    """A recorded conversation, utterance by utterance."""

    video: str | None = option(None, "the recording (video)")
    audio: str | None = option(None, "the recording's sound, if separate (or the only recording)")
    transcript: str | None = option(None, "utterances with speakers and times: .srt, .vtt (<v Name> or 'Name:') "
                                          "or .jsonl {speaker, start, end, text}")
    out: str | None = option(None, "where timeline.jsonl, timeline.png and timeline.md go")
    split: str | None = option(None, "with --dataset: the split holding the dialogue")
    dialogue: str | None = option(None, "with --dataset: the dialogue id (e.g. 17 for MELD's Dialogue_ID 17)")


@dataclass
class DistillOptions:
    """Distillation: which teacher answers become training targets."""

    filter: Literal["agree", "rationalise", "all"] = option(
        "rationalise", "agree: keep rows where the teacher matches gold; rationalise: also re-ask wrong rows with "
                       "the gold label as a hint and keep them when the hinted answer is gold (STaR); all: keep "
                       "every answer (no gold needed)")
    dev_split: str | None = option("dev", "copy this split with its gold labels into the manifest, for choosing "
                                          "the student's checkpoint (never trained on); null: none")


@dataclass
class CalibrateOptions:
    """Fitting on a finished dev run (calibration, a fusion gate)."""

    run_dir: str | None = option(None, "a finished evaluate run (with label probabilities) on a dev split",
                                 positional=True)
    out: str | None = option(None, "where to write the fitted file (calibration.json, fusion.json)")


@dataclass
class ListOptions:
    what: Literal["datasets", "labels", "templates", "models"] = option(
        "labels", "what to list", positional=True)


# -- per-verb configs ------------------------------------------------------------------------

@dataclass
class EngineRunConfig:
    """A model on an engine: the base of the backend and of `serve`."""

    model: ModelConfig = field(default_factory=ModelConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)


@dataclass
class BackendConfig(EngineRunConfig):
    """Everything a backend needs to start."""

    client: ClientConfig = field(default_factory=ClientConfig)


@dataclass
class PromptedConfig:
    """A model and what to ask it: the base of every verb that builds prompts."""

    model: ModelConfig = field(default_factory=ModelConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    media: MediaConfig = field(default_factory=MediaConfig)


@dataclass
class InferenceConfig(PromptedConfig):
    """...and a backend to run it on."""

    engine: EngineConfig = field(default_factory=EngineConfig)
    client: ClientConfig = field(default_factory=ClientConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)

    @property
    def backend(self) -> BackendConfig:
        return BackendConfig(self.model, self.engine, self.client)


@dataclass
class TrainConfig(PromptedConfig):
    """A fine-tuning recipe; finetune/configs/*.yaml are this tree (flat keys or sections)."""

    data: DataConfig = field(default_factory=DataConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    traces: TraceConfig = field(default_factory=TraceConfig)

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
        return load_config(cls, path, overrides)

    def to_yaml(self) -> str:
        return yaml.safe_dump(dataclasses.asdict(self), sort_keys=False)


def _verb(name: str, base: type | None = None, **sections: type) -> type:
    """A verb's config: the sections of `base` plus these, in order."""
    return dataclasses.make_dataclass(name, [(n, t, field(default_factory=t)) for n, t in sections.items()],
                                      bases=(base,) if base else (), namespace={"__module__": __name__})


PredictConfig = _verb("PredictConfig", InferenceConfig, input=PredictInput)
EvaluateConfig = _verb("EvaluateConfig", InferenceConfig, data=DataConfig, run=RunConfig, scale=ScaleConfig)
DialogueConfig = _verb("DialogueConfig", InferenceConfig, data=DataConfig, dialogue=DialogueOptions)
AppConfig = _verb("AppConfig", InferenceConfig, ui=UIConfig)
ServeConfig = _verb("ServeConfig", EngineRunConfig, server=ServerConfig)
MergeConfig = _verb("MergeConfig", model=ModelConfig, merge=MergeOptions)
MakeTinyConfig = _verb("MakeTinyConfig", tiny=TinyConfig)
CompareConfig = _verb("CompareConfig", compare=CompareOptions)
CalibrateConfig = _verb("CalibrateConfig", calibrate=CalibrateOptions)
ListConfig = _verb("ListConfig", list=ListOptions)
FitFusionConfig = _verb("FitFusionConfig", fit=CalibrateOptions)
DistillConfig = _verb("DistillConfig", InferenceConfig, data=DataConfig, run=RunConfig, scale=ScaleConfig,
                      distill=DistillOptions)


# -- building configs from flat keys, sections and YAML --------------------------------------

class ConfigError(ValueError):
    """A key or value no config field takes; says the nearest valid name."""


def leaf_fields(cls: type) -> dict[str, tuple[str, dataclasses.Field]]:
    """Flat leaf name -> (section name, field) for a verb config class."""
    leaves: dict[str, tuple[str, dataclasses.Field]] = {}
    for section in fields(cls):
        for leaf in fields(_section_type(cls, section.name)):
            if leaf.name in leaves:
                raise TypeError(f"{cls.__name__}: option {leaf.name!r} is in two sections")
            leaves[leaf.name] = (section.name, leaf)
    return leaves


def _section_type(cls: type, name: str) -> type:
    import typing

    hint = typing.get_type_hints(cls)[name]
    if not is_dataclass(hint):
        raise TypeError(f"{cls.__name__}.{name} is not a section dataclass")
    return hint


def unknown_key_error(key: str, known: list[str], where: str = "") -> ConfigError:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"{where}unknown option {key!r}{hint}")


def flatten(cls: type, data: dict[str, Any], where: str = "") -> dict[str, Any]:
    """Flat leaf values from a mapping of flat keys, `section.key` keys and section mappings."""
    leaves = leaf_fields(cls)
    sections = {f.name for f in fields(cls)}
    flat: dict[str, Any] = {}
    for key, value in (data or {}).items():
        key = str(key).replace("-", "_")
        section, dot, leaf = key.partition(".")
        if dot:
            if section not in sections or leaf not in leaves or leaves[leaf][0] != section:
                raise unknown_key_error(key, [f"{s}.{k}" for k, (s, _) in leaves.items()], where)
            flat[leaf] = value
        elif key in sections and isinstance(value, dict) and not (key in leaves and leaves[key][1].type == "dict"):
            flat.update(flatten(cls, {f"{key}.{k}": v for k, v in value.items()}, where))
        elif key in leaves:
            flat[key] = value
        else:
            raise unknown_key_error(key, list(leaves) + sorted(sections), where)
    return flat


def build(cls: type, flat: dict[str, Any] | None = None, **values: Any):
    """A verb config from flat leaf values (`build(EvaluateConfig, dtype="float32", split="test")`)."""
    data = flatten(cls, {**(flat or {}), **values})
    leaves = leaf_fields(cls)
    per_section: dict[str, dict[str, Any]] = {f.name: {} for f in fields(cls)}
    for key, value in data.items():
        per_section[leaves[key][0]][key] = value
    return cls(**{name: _section_type(cls, name)(**kw) for name, kw in per_section.items()})


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{where}: not a readable YAML file ({problem})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file is a mapping of options, not a {type(data).__name__}")
    return data


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`key=value` pairs, values read as YAML (`limit=8`, `modalities=[text,video]`)."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not key=value")
        out[key.strip()] = yaml.safe_load(value)
    return out


def load_config(cls: type, path: str | Path | None = None, overrides: list[str] | None = None, **values: Any):
    """A verb config from a YAML file, then `key=value` overrides, then keyword values."""
    data = flatten(cls, read_yaml(path), f"{path}: ") if path else {}
    data.update(flatten(cls, parse_overrides(overrides or [])))
    data.update(values)
    return build(cls, data)


def to_flat(config: Any) -> dict[str, Any]:
    """Leaf name -> value of a verb config (what a YAML file with flat keys would hold)."""
    return {leaf: getattr(getattr(config, section), leaf) for leaf, (section, _) in leaf_fields(type(config)).items()}
