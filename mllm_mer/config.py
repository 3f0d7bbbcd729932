"""Configuration dataclasses. Each field is documented once, here; the CLI and YAML recipes read them."""
from __future__ import annotations

from dataclasses import dataclass, field

from mllm_mer.models import DEFAULT_MODEL


@dataclass
class BackendConfig:
    """How to load and run the model, whichever backend runs it."""

    model: str = DEFAULT_MODEL  # hub id or local checkpoint directory
    backend: str = "transformers"  # transformers | vllm | openai
    adapters: dict[str, str] = field(default_factory=dict)  # adapter name -> PEFT directory
    dtype: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | float32 | bfloat16 | float16
    max_new_tokens: int = 512
    batch_size: int = 8  # transformers backend: samples per forward; vLLM schedules its own
    trust_remote_code: bool = False  # never needed for the supported families
    # vLLM engine
    max_model_len: int = 8192
    gpu_memory_utilization: float = 0.85
    kv_cache_gb: int = 1  # CPU build: KV cache space in GiB
    tensor_parallel_size: int = 1
    data_parallel_size: int = 1
    enforce_eager: bool = False  # skip graph capture/compilation: faster start, slower decode
    max_lora_rank: int = 64
    max_frames: int | None = None  # frames per clip (default: the model family's)
    max_pixels: int | None = None  # per frame (default: the model family's)
    seed: int = 0
    # OpenAI-compatible server
    base_url: str | None = None
    api_key: str | None = None
    timeout_s: float = 120.0
    retries: int = 2


@dataclass
class PromptConfig:
    """What to ask: label set, template, modalities."""

    labels: str = "meld"  # bundled label set name or YAML path
    template: str = "zero_shot"  # zero_shot | label_only | few_shot | path to a .jinja
    modalities: tuple[str, ...] = ("text", "video", "audio")
    mode: str = "generate"  # generate (constrained JSON with rationale) | score (label probabilities only)
