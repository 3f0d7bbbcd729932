"""The physiological modality: a sample's signal file -> a window's NeuroKit2 features -> cue words.

A sample names its recording (`Sample.physio`); `start`/`end` pick the window, so one long recording serves
many samples. Its baseline (`metadata["physio_baseline"]`) is either a window of the same recording
(`[start, end]` or "START:END", e.g. WESAD's baseline condition, DEAP's pre-trial seconds) or numbers
already computed (a dict, e.g. the median of the subject's other samples). Features are cached on disk
per file version, window and reading settings, like the vocal cues.
"""
from __future__ import annotations

from mllm_mer.core.types import MediaSettings, Sample
from mllm_mer.media.decode import file_key
from mllm_mer.media.errors import MediaError, WindowOutside
from mllm_mer.media.frame_cache import media_cache
from mllm_mer.media.physio import features as features_mod
from mllm_mer.media.physio import readers, signals
from mllm_mer.media.physio.words import describe

__all__ = ["physio_for", "physio_plot", "window_features", "window_words"]


def window_features(path: str, start: float | None, end: float | None, settings: MediaSettings,
                    part: str | None = None) -> tuple[dict, list[str]]:
    """(numbers, notes) of one window of a recording, from the disk cache when it was computed before."""
    cache = media_cache(settings.media_cache_gb)
    key = ("physio", features_mod.FEATURES_VERSION, file_key(path), start, end, part, settings.physio_rate,
           settings.physio_channels)
    if cache is not None and (hit := cache.get_json(key)) is not None:
        return hit["features"], hit["notes"]
    notes: list[str] = []
    recording = readers.read(path, settings.physio_rate, settings.physio_channels, part)
    cut = signals.clean(signals.window(recording, start, end), notes)
    if end is not None and end > recording.duration + 0.5:
        notes.append(f"{_name(path)}: window ends at {end:.1f} s, the recording at {recording.duration:.1f} s")
    found = features_mod.extract(cut, notes)
    if len(found) == 1:  # only the duration: no channel gave a number
        raise MediaError(path, "no usable physiological channel in the window (" + "; ".join(notes) + ")")
    if cache is not None:
        cache.put_json(key, {"features": found, "notes": notes})
    return found, notes


def physio_for(sample: Sample, settings: MediaSettings, notes: list[str]) -> tuple[str, dict]:
    """(cue words, the numbers behind them) of the sample's window; MediaError when the signals cannot serve."""
    part = sample.metadata.get("physio_part")
    part = None if part is None else str(part)
    try:
        found, noticed = window_features(sample.physio, sample.start, sample.end, settings, part)
    except ValueError as error:  # a declaration the reader refused (--physio-channels): this sample's error too
        if isinstance(error, MediaError):
            raise
        raise MediaError(sample.physio, str(error)) from None
    notes.extend(f"{_name(sample.physio)}: {n}" for n in noticed)
    baseline = _baseline(sample, settings, part, notes)
    return describe(found, baseline), found


def window_words(sample: Sample, start: float, end: float, settings: MediaSettings, notes: list[str]) -> str:
    """Cue words of a part of the sample's recording (the agent's `signals` tool), against the same baseline
    as the sample's own words."""
    part = sample.metadata.get("physio_part")
    part = None if part is None else str(part)
    found, noticed = window_features(sample.physio, start, end, settings, part)
    notes.extend(noticed)
    return describe(found, _baseline(sample, settings, part, notes))


def physio_plot(sample: Sample, settings: MediaSettings, notes: list[str]):
    """The sample's window drawn as one image (`--physio-view plot|both`); None, with a note, when it holds no
    channel that is drawn (EEG alone: its band powers are in the words)."""
    from mllm_mer.media.physio.plot import draw_traces

    part = sample.metadata.get("physio_part")
    recording = readers.read(sample.physio, settings.physio_rate, settings.physio_channels,
                             None if part is None else str(part))
    drawn = draw_traces(signals.clean(signals.window(recording, sample.start, sample.end), []))
    if drawn is None:
        notes.append(f"{_name(sample.physio)}: no heart, skin or breathing channel to draw; the signals are in words")
    return drawn


def _baseline(sample: Sample, settings: MediaSettings, part: str | None, notes: list[str]) -> dict | None:
    given = sample.metadata.get("physio_baseline")
    if given in (None, ""):
        return None
    if isinstance(given, dict):
        return given
    try:
        start, end = (float(x) for x in (given.split(":") if isinstance(given, str) else given))
        return window_features(sample.physio, start, end, settings, part)[0]
    except WindowOutside as error:
        notes.append(f"{_name(sample.physio)}: baseline {error.reason}; no baseline words")
    except MediaError as error:
        notes.append(f"{_name(sample.physio)}: the baseline window gave no features ({error.reason})")
    except (TypeError, ValueError):
        notes.append(f"{_name(sample.physio)}: baseline {given!r} is not START:END seconds; no baseline words")
    return None


def _name(path: str) -> str:
    from pathlib import Path

    return Path(path).name
