"""The config sections: small dataclasses of leaf options, each field documented once, here."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mllm_mer.config.tree import OptionError, Section, option
from mllm_mer.core.families import DEFAULT_MODEL
from mllm_mer.core.registry import BACKENDS, DATASETS, FUSERS, STRATEGIES


@dataclass
class ModelConfig(Section):
    """Which model answers, with which adapters, on which backend."""

    model: str = option(DEFAULT_MODEL, "hub id or local checkpoint directory")
    adapter: list[str] = option([], "LoRA adapter: PATH or NAME=PATH (repeatable); a trained adapter's "
                                    "prompt settings come with it")
    backend: str = option("transformers", "who runs the model", choices=tuple(BACKENDS))
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = option(
        "auto", "weights dtype (auto: bf16 on GPU, fp32 on CPU)")
    max_new_tokens: int = option(1024, "answer length cap (the constrained answer needs < 2048 worst case)", low=1)
    forward_batch_size: int = option(8, "transformers backend: samples per forward pass", low=1)
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
class EngineConfig(Section):
    """The vLLM engine (in process, or behind `serve`)."""

    max_model_len: int = option(8192, "context length the engine reserves", low=16)
    gpu_memory_utilization: float = option(0.85, "GPU memory share for weights and KV cache", low=0.01, high=1.0)
    kv_cache_gb: int = option(1, "CPU build: KV cache space in GiB", low=1)
    tensor_parallel_size: int = option(1, "GPUs one replica is split over", low=1)
    data_parallel_size: int = option(1, "engine replicas (vLLM data parallelism)", low=1)
    enforce_eager: bool = option(False, "skip graph capture/compilation: faster start, slower decode")
    max_lora_rank: int = option(64, "largest adapter rank the engine accepts", low=1)
    max_images: int = option(8, "images per prompt (beyond the first: an agent's look observations)", low=1)
    engine_args: dict = option({}, "further vllm EngineArgs fields, as a YAML/JSON mapping (passed through)")
    engine_log: bool = option(False, "show vLLM's own start-up and progress logging (default: its warnings only)")


@dataclass
class ClientConfig(Section):
    """An OpenAI-compatible server (backend openai)."""

    base_url: list[str] = option([], "server URL, e.g. http://127.0.0.1:8000; repeatable: requests are spread "
                                     "over several servers")
    api_key: str | None = option(None, "server key (prefer the MLLM_MER_API_KEY environment variable)")
    timeout_s: float = option(120.0, "per-request timeout", low=0.1)
    retries: int = option(2, "retries of a failed request", low=0)
    concurrency: int = option(8, "requests in flight at once, per server (the server batches them continuously)", low=1)

    def check(self) -> None:
        if isinstance(self.base_url, str):  # one URL given as a plain value (YAML, Python)
            self.base_url = [self.base_url]


@dataclass
class PromptConfig(Section):
    """What to ask. Unset fields come from the adapter's saved prompt, then the defaults."""

    labels: str | None = option(None, "label set name or YAML file (default: the dataset's own, else meld)")
    template: str | None = option(None, "zero_shot | label_only | few_shot | retrieved | path to a .jinja "
                                        "(default zero_shot; `mllm-mer ls templates`)")
    modalities: list[str] | None = option(None, "subset of text,video,audio (default all)")
    mode: Literal["generate", "score"] = option(
        "generate", "generate: constrained JSON with rationale; score: label probabilities only")
    calibration: str | None = option(None, "calibration.json from `mllm-mer calibrate DEV_RUN`: rescales label "
                                           "probabilities (the label set must match)")
    max_text_chars: int = option(6000, "transcript + context budget per sample; longer text is cut (latest "
                                       "turns kept) and the prediction notes it", low=1)
    label_map: list[str] = option([], "FROM=TO aliases for gold and answers, case and whitespace folded (e.g. "
                                      "anxiety=fear; repeatable or comma-separated)")
    reasoning: Literal["none", "before", "native"] | None = option(
        None, "answer order: none (the answer first; fastest), before (the model reasons in a <reasoning> block, "
              "then answers; any model), native (a thinking checkpoint's own think block); label probabilities are "
              "read after the reasoning (default none, or the adapter's)")
    max_reasoning_tokens: int | None = option(None, "bound of the reasoning block in tokens; a block cut there "
                                                    "still gets an answer, with a note (default 512, or the "
                                                    "adapter's)", low=1)


@dataclass
class AgentConfig(Section):
    """The agent's budget and tools: how it runs (`--strategy agent`) and what it is trained for (traces)."""

    max_steps: int = option(3, "agent: actions per sample at most; the last one may only answer", low=1)
    tools: list[str] = option(["look", "listen", "recall", "context", "signals"], "agent: tools offered (each where it "
                                                                        "applies)")
    look_frames: int = option(4, "agent: frames one look may ask for (all looks: at most max_frames)", low=1)


@dataclass
class StrategyConfig(AgentConfig):
    """How the model reaches its answer: one pass, or an agent that gathers evidence first; self-consistency."""

    strategy: str = option(
        "single", "single: one prompt, one answer; agent: call tools (look, listen, recall, context, signals), then "
                  "answer; fusion: score one prompt per modality plus the joint one, then fuse",
        choices=STRATEGIES)  # the live registry: a strategy registered at run time is a valid choice
    samples: int = option(1, "self-consistency: answers drawn per sample and voted (1: greedy, no vote)", low=1)
    temperature: float = option(0.7, "self-consistency: sampling temperature of the draws", low=0.0)
    fuser: str = option(
        "entropy", "fusion: mean, product of experts, entropy-weighted (confident modalities weigh more), or "
                   "gate (a learned gate: --fusion)", choices=tuple(FUSERS))
    fusion: str | None = option(None, "fusion.json from `mllm-mer fit-fusion DEV_RUN` (the gate fuser)")
    experts: Literal["singles", "all"] = option("singles", "fusion: experts per modality plus the joint prompt, or "
                                                           "every non-empty modality subset (an ablation)")

    def check(self) -> None:
        if self.fuser == "gate" and not self.fusion:  # the learned gate is the file
            raise OptionError("--fuser", "gate needs --fusion fusion.json (from `mllm-mer fit-fusion DEV_RUN`)")


@dataclass
class RetrievalConfig(Section):
    """Labelled demonstrations: the `retrieved` template and the agent's recall tool."""

    retrieve_split: str | None = option("train", "labelled split to retrieve from (never includes the sample "
                                                 "itself or its dialogue)")
    retrieve_dataset: str | None = option(None, "dataset of that split (default: the run's)")
    retrieve_data_dir: str | None = option(None, "its folder or manifest (default: the run's)")
    retrieve_k: int = option(4, "demonstrations per prompt (recall may ask for up to this many)", low=1)
    retrieve_embedder: str | None = option(None, "sentence-embedding model (transformers id or folder); "
                                                 "default TF-IDF")


@dataclass
class MediaConfig(Section):
    """How clips become frames, transcript and vocal cues. Unset budgets come from the model family."""

    max_frames: int | None = option(None, "frames per clip (default: the model family's)", low=1)
    max_pixels: int | None = option(None, "pixel budget per frame (default: the model family's)", low=784)
    fps: float | None = option(None, "sample frames at this rate (still at most max_frames)", low=0.01)
    keyframe_snap: float = option(0.25, "move a sampled time onto a keyframe within this fraction of the "
                                        "sampling interval, and skip deblocking (faster decoding); 0 = "
                                        "exact times and pixels", low=0.0, high=1.0)
    vocal_cues: bool = option(True, "describe loudness, pitch, pauses and speech rate from the audio")
    visual: Literal["frames", "faces", "both"] = option(
        "frames", "what the model sees of each sampled frame: the whole frame, a square crop of the main face "
                  "(detected and tracked; a frame without a face is shown whole, with a note), or both side by side")
    frame_selection: Literal["uniform", "peak"] = option(
        "uniform", "uniform sampling, or peak: of 4x the frame budget decoded, the frames where the face departs "
                   "most from the clip's median face (true times kept)")
    face_detector: Literal["haar"] = option("haar", "face detector: haar (OpenCV's bundled frontal-face cascade)")
    face_margin: float = option(0.25, "context kept around a face box on each side, as a share of the box",
                                low=0.0, high=2.0)
    asr_model: str | None = option(None, "Whisper id or directory, used when no transcript is given")
    physio_rate: float | None = option(None, "sampling rate in Hz of signal files that carry none (.npy, a CSV "
                                             "without a time column); a time column must agree with it", low=0.01)
    physio_channels: list[str] = option([], "channel types of signal columns not named by type: NAME=TYPE (e.g. "
                                            "ch1=ecg, GSR=eda), or bare types in column order (e.g. ecg,eda,resp); "
                                            "types: ecg, ppg (bvp), eda (gsr), resp, temp, acc, eeg")
    physio_view: Literal["text", "plot", "both"] = option(
        "text", "physiological signals in the prompt as words (numbers against the baseline), as one image of "
                "the window's traces (for models that read images), or both")
    media_cache_gb: float = option(2.0, "decoded frames kept on disk ($MLLM_MER_CACHE/media, default ~/.cache/"
                                        "mllm-mer/media) up to this many GiB, so reruns decode nothing; 0 = off",
                                   low=0.0)


@dataclass
class DataConfig(Section):
    """Where samples come from: a bundled benchmark loader or a CSV/JSONL manifest."""

    dataset: str | None = option(None, " | ".join(name for name in DATASETS if name != "distilled")
                                 + " (see `mllm-mer ls datasets`)")
    data_dir: str | None = option(None, "release folder (the CSV/JSONL file for manifest)")
    video_dir: str | None = option(None, "clips folder, if not in the release layout")
    context_window: int | None = option(None, "previous turns given as context (-1: all; default 5, for every "
                                                  "verb)", low=-1)
    context_labels: Literal["none", "predicted", "gold"] | None = option(
        None, "emotions shown with earlier turns: none, the predicted ones (turns classified in order, dialogues "
              "in lockstep) or gold (oracle information, flagged in reports); default: none, for every verb")
    id_col: str = option("id", "manifest: column of the sample id (several, comma-separated: a composite key)")
    text_col: str = option("text", "manifest: column of the transcript ('': none, e.g. face photos)")
    label_col: str = option("label", "manifest: column of the gold label ('': none)")
    video_col: str = option("video", "manifest: column of the clip path")
    audio_col: str = option("audio", "manifest: column of the audio file path")
    image_col: str = option("image", "manifest: column of the still image path")
    physio_col: str = option("physio", "manifest: column of the physiological signal file (CSV/TSV, .npy/.npz, "
                                       "EDF/BDF), windowed by the row's start/end")
    speaker_col: str = option("speaker", "manifest: column of the speaker")
    dialogue_col: str = option("dialogue", "manifest: column of the dialogue id (several: a composite key)")
    order_col: str | None = option(None, "manifest: column of the utterance order within a dialogue")
    media_root: str | None = option(None, "manifest: folder relative media paths resolve in (default: the "
                                          "manifest's)")
    delimiter: str | None = option(None, "manifest: CSV delimiter, e.g. '\\t' or '|' (default: by suffix)")
    header: bool = option(True, "manifest: the first line names the columns (--no-header: name them with "
                                "--columns)")
    columns: str | None = option(None, "manifest: the column names, comma-separated, of a headerless file")
    turns_field: str | None = option(None, "manifest: field holding each dialogue record's list of turns")
    turn_text: str = option("utterance", "manifest with --turns-field: a turn's text field")
    turn_speaker: str = option("speaker", "manifest with --turns-field: a turn's speaker field")
    turn_label: str = option("emotion", "manifest with --turns-field: a turn's label field")
    label_ids: bool = option(False, "manifest: gold labels are 0-based indices into the label set's labels "
                                    "('3,7': two labels)")
    task: str = option("emotion", "manifest: the task its label column annotates")
    dataset_options: dict = option({}, "further loader keywords, as a YAML/JSON mapping")


@dataclass
class ServerConfig(Section):
    """The OpenAI-compatible vLLM server `serve` runs."""

    host: str = option("127.0.0.1", "bind address (loopback unless asked)")
    port: int = option(8000, "port (0 picks a free one)")
    api_key: str | None = option(None, "key clients must send (prefer the MLLM_MER_API_KEY environment variable)")
    served_name: str | None = option(None, "model name clients use (default: the model's directory/id name)")
    max_videos: int = option(1, "videos per prompt", low=1)
    allow_remote_media: bool = option(False, "let requests name http(s) media URLs for the server to fetch "
                                             "(default: inline data: URLs only)")
    startup_timeout_s: float = option(300.0, "give up if not healthy by then", low=1.0)
    drain_s: int = option(10, "on stop, answers in flight get this long to finish before the engine stops",
                          low=0)
    log_file: str | None = option(None, "write the server's output here")
    # What one request may ask for (the project's own clients need far less): refused with the limit named.
    max_body_mb: float = option(64.0, "largest request body, in MB (inline media included)", low=0.001)
    max_schema_kb: float = option(64.0, "largest JSON schema or grammar in a request, in KB", low=0.001)
    max_enum: int = option(1000, "most enum values and choices in one request's schema", low=1)
    max_prompts: int = option(8, "most prompts in one /v1/completions request", low=1)


@dataclass
class UIConfig(Section):
    """The Gradio front end."""

    host: str = option("127.0.0.1", "bind address (loopback unless asked)")
    port: int = option(7860, "port")
    auth: str | None = option(None, "user:password (prefer the MLLM_MER_APP_AUTH environment variable)")
    max_upload_mb: int = option(200, "largest upload", low=1)
    ui_concurrency: int = option(4, "simultaneous requests per event; analyse requests are batched up to 16", low=1)
    chat_max_new_tokens: int = option(256, "chat answer length cap", low=1)
    runs_dir: str = option("~/.cache/mllm-mer/app-runs", "where Batch runs are written")
    keep_hours: float = option(24.0, "the app's outputs (Batch runs, analyses, conversations, uploads) are "
                                     "removed after this many hours", low=0.01)
    keep_gb: float = option(2.0, "and the oldest go first past this size, per kind of output", low=0.001)
    data_dirs: list[str] = option([], "server folders the Batch tab may read clips from (repeatable); "
                                      "without one, Batch takes a zip of manifest + clips")
    example_video: str | None = option(None, "a clip the Analyse tab offers as a one-click example")
    example_transcript: str | None = option(None, "the example clip's transcript")


@dataclass
class PredictInput(Section):
    """The one input `predict` classifies."""

    id: str = option("input", "sample id in the output")
    image: str | None = option(None, "a still image (e.g. a face crop)")
    frames_dir: str | None = option(None, "directory of frames (sorted by name)")
    video: str | None = option(None, "video file")
    audio: str | None = option(None, "audio file (else the video's sound)")
    physio: str | None = option(None, "physiological signal file (CSV/TSV with a time column, .npy/.npz, EDF/BDF; "
                                      "see --physio-rate, --physio-channels)")
    transcript: str | None = option(None, "what is said (else Whisper with --asr-model)")
    speaker: str | None = option(None, "who says it")
    context: str | None = option(None, "JSONL file of earlier turns: {speaker, text, emotion?}")
    show_prompt: bool = option(False, "also print the exact prompt (messages, media placeholders) to stderr")
    show_evidence: bool = option(False, "also print the evidence to stderr: transcript, vocal cues, frame times, "
                                        "seconds heard, and what was cut")


@dataclass
class RunConfig(Section):
    """A resumable batch run over one split."""

    split: str | None = option(None, "split to run (see the dataset's loader)")
    out: str | None = option(None, "run directory (rerun the same command to resume)")
    limit: int | None = option(None, "first N samples of the split", low=1)
    batch_size: int = option(16, "samples per backend call where answers come back per batch (transformers, "
                                 "score mode, agent, fusion, self-consistency)", low=1)
    submission: Literal["continuous", "batched"] = option(
        "continuous", "continuous: each prompt goes to the engine (vllm, openai) as soon as it is ready and each "
                      "answer is saved as it finishes; batched: batch_size at a time")
    prefetch: int = option(32, "samples prepared (media decoded) ahead of the backend; bounds memory", low=1)
    media_workers: int | None = option(None, "threads decoding media alongside inference (default: min(4, "
                                                 "cores))", low=1)
    probabilities: bool = option(False, "generate mode: also score label probabilities (one extra pass)")
    compare_orders: bool = option(False, "with --reasoning before|native: also score the label-first answer "
                                         "(--reasoning none) of every sample, and report how often reasoning "
                                         "changed the label and whether it helped (accuracy, ECE)")
    faithfulness: bool = option(False, "re-score each answered sample without each modality it brings (one "
                                       "scoring pass per modality) and report whether what its rationale cites "
                                       "moves its label, beside what it does not cite")
    abstain_below: float | None = option(None, "answers whose label probability is below this abstain in the "
                                               "metrics: counted apart from errors, with coverage and selective "
                                               "accuracy (not part of the run's identity)", low=0.0, high=1.0)


@dataclass
class ScaleConfig(Section):
    """Where batch prompting runs: in this process, or on a Ray cluster (pip install "mllm-mer[ray]")."""

    engine: Literal["local", "ray"] = option("local", "local: this process; ray: a Ray Dataset answered by an "
                                                      "actor pool, each actor holding one backend")
    replicas: int = option(1, "ray: backend actors (each loads the model once)", low=1)
    ray_address: str | None = option(None, "ray: an existing cluster (e.g. auto, ray://head:10001); default: "
                                           "start a local one")
    replica_gpus: float | None = option(None, "ray: GPUs per replica (default 1 where CUDA is visible, else 0)",
                                         low=0.0)
    replica_cpus: float = option(0.5, "ray: CPUs reserved per replica (fractional, so that read and decode "
                                      "tasks still get a core on a small node)", low=0.0)
    task_cpus: float = option(0.25, "ray: CPUs per media-decoding task", low=0.01)


__all__ = ["AgentConfig", "ClientConfig", "DataConfig", "EngineConfig", "MediaConfig", "ModelConfig",
           "PredictInput", "PromptConfig", "RetrievalConfig", "RunConfig", "ScaleConfig",
           "ServerConfig", "StrategyConfig", "UIConfig"]
