"""Each speaker's own vocal baseline over a recording's utterances, so cue words can say "higher pitch
than this speaker's median" instead of an absolute height that a voice's sex alone would trip."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

from mllm_mer.core.types import Sample


def _sound(sample: Sample) -> tuple[str, float | None, float | None] | None:
    if sample.video or sample.audio:
        return sample.video or sample.audio, sample.start, sample.end
    return None


def with_speaker_baselines(samples: list[Sample], cache_gb: float = 0.0) -> list[Sample]:
    """The samples, each carrying its speaker's median eGeMAPS numbers (metadata["vocal_baseline"]) where
    the speaker is known and has two or more utterances with speech; unchanged where openSMILE cannot load."""
    from mllm_mer.media import MediaError
    from mllm_mer.media.acoustic import OpenSmileUnavailable, baseline
    from mllm_mer.media.audio import load_audio
    from mllm_mer.media.speech_cues import features_for

    by_speaker: dict[str, list[dict]] = defaultdict(list)
    for sample in samples:
        source = _sound(sample)
        if source is None or not sample.speaker or sample.speaker == "unknown speaker":
            continue
        try:
            by_speaker[sample.speaker].append(features_for(load_audio(*source, cache_gb=cache_gb), source, cache_gb))
        except (MediaError, OpenSmileUnavailable):
            continue  # this utterance gives no baseline; its own media error shows when it is classified
    medians = {who: baseline(found) for who, found in by_speaker.items() if len(found) >= 2}
    return [replace(s, metadata={**s.metadata, "vocal_baseline": medians[s.speaker]}) if medians.get(s.speaker)
            else s for s in samples]
