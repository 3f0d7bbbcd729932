"""Speech -> transcript with Whisper through transformers (model id or local directory)."""
from __future__ import annotations

import threading
from functools import lru_cache

import numpy as np

from mllm_mer.media.audio import SAMPLE_RATE

DEFAULT_ASR_MODEL = "openai/whisper-large-v3-turbo"
_ONE_AT_A_TIME = threading.Lock()  # media threads share one model; it uses every core anyway


@lru_cache(maxsize=2)
def _pipeline(model: str, device: str):
    from transformers import pipeline

    from mllm_mer.core.families import explain_load_error

    try:
        return pipeline("automatic-speech-recognition", model=model, device=device)
    except OSError as error:
        raise explain_load_error(model, error) from error


def transcribe(audio: np.ndarray, model: str = DEFAULT_ASR_MODEL, max_new_tokens: int = 128) -> str:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    with _ONE_AT_A_TIME:
        asr = _pipeline(model, device)
        out = asr({"raw": audio, "sampling_rate": SAMPLE_RATE}, generate_kwargs={"max_new_tokens": max_new_tokens})
    return str(out["text"]).strip()
