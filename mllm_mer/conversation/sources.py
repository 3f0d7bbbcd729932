"""The utterances of a conversation a user asks for: a recording with its transcript (or ASR), or one
dialogue of a dataset split."""
from __future__ import annotations

from mllm_mer.conversation.baselines import with_speaker_baselines
from mllm_mer.conversation.transcripts import asr_utterances, read_transcript, utterance_samples
from mllm_mer.core.types import Sample
from mllm_mer.datasets import DatasetError, load_configured


def conversation_samples(cfg) -> tuple[list[Sample], str | None]:
    """The utterances of the conversation a DialogueConfig asks for, and the label set they come with
    (None: the default)."""
    options, data = cfg.dialogue, cfg.data
    if data.dataset:
        if options.dialogue is None or not data.data_dir:
            raise ValueError("dialogue --dataset needs --data-dir, --split and --dialogue ID")
        split = load_configured(data, options.split, cfg.prompt.labels)
        samples = [s for s in split.samples if str(s.metadata.get("dialogue")) == str(options.dialogue)]
        if not samples:
            raise DatasetError(f"{split.name} has no dialogue {options.dialogue!r}")
        return samples, split.labels
    if options.transcript:
        samples = utterance_samples(read_transcript(options.transcript), options.video, options.audio)
        if cfg.media.vocal_cues and "audio" in (cfg.prompt.modalities or ("audio",)):
            samples = with_speaker_baselines(samples, cfg.media.media_cache_gb)
        return samples, None
    if cfg.media.asr_model and (options.video or options.audio):
        utterances = asr_utterances(options.audio or options.video, cfg.media.asr_model, cfg.media.media_cache_gb)
        return utterance_samples(utterances, options.video, options.audio), None
    raise ValueError("dialogue needs --transcript FILE (.srt/.vtt/.jsonl), or --asr-model with the recording, "
                     "or --dataset/--split/--dialogue")
