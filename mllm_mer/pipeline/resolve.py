"""Resolve once: configs (+ an adapter's saved prompt, + the model registry) -> a PromptSetup.

Every verb calls `resolve_prompt` at its start; nothing downstream re-reads label-set or
template names. A trained adapter carries the prompt it was trained with (`prompt.yaml`
beside its weights, written by `save_adapter_prompt`), so serving it needs no flags.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from mllm_mer.config import ClientConfig, MediaConfig, ModelConfig, PromptConfig, RetrievalConfig, StrategyConfig
from mllm_mer.core.families import PROMPTED_BLOCK, ModelFamily, known_family, think_block
from mllm_mer.core.labels import check_list_answers, load_label_scheme, same_scheme, with_label_map
from mllm_mer.core.types import MODALITIES, MediaSettings, PromptSetup, Reasoning
from mllm_mer.pipeline.adapter_prompt import adapter_prompt
from mllm_mer.prompting import load_template, needs_demonstrations
from mllm_mer.strategies import Strategy, build_strategy

log = logging.getLogger(__name__)
DEFAULT_REASONING_TOKENS = 512


def split_modalities(values: list[str] | tuple[str, ...] | str | None) -> tuple[str, ...] | None:
    """`["text,video"]`, `["text", "video"]` or `"text,video"` -> ("text", "video")."""
    if values is None:
        return None
    items = [values] if isinstance(values, str) else list(values)
    chosen = tuple(m.strip() for item in items for m in str(item).split(",") if m.strip())
    unknown = sorted(set(chosen) - set(MODALITIES))
    if unknown:
        raise ValueError(f"unknown modalities {unknown}; choose from {', '.join(MODALITIES)}")
    if not chosen:
        raise ValueError("no modality left: choose from " + ", ".join(MODALITIES))
    return chosen


def media_settings(media: MediaConfig, family: ModelFamily | None,
                   saved: dict[str, Any] | None = None) -> MediaSettings:
    """The frame budget: the flags, else the adapter's training budget, else the model family's (None: the
    registry cannot tell the model, so the general defaults)."""
    saved = saved or {}
    physio_channels = _channel_items(media.physio_channels)
    budget = family or MediaSettings()  # the family's frame and pixel budget, else the general one
    max_frames = media.max_frames or saved.get("max_frames") or budget.max_frames
    max_pixels = media.max_pixels or saved.get("max_pixels") or budget.max_pixels
    return MediaSettings(max_frames=int(max_frames), max_pixels=max_pixels, fps=media.fps,
                         keyframe_snap=media.keyframe_snap, vocal_cues=media.vocal_cues, asr_model=media.asr_model,
                         media_cache_gb=media.media_cache_gb, visual=media.visual,
                         frame_selection=media.frame_selection, face_detector=media.face_detector,
                         face_margin=media.face_margin, physio_rate=media.physio_rate,
                         physio_channels=physio_channels, physio_view=media.physio_view)


def _channel_items(values: list[str] | str | None) -> tuple[str, ...]:
    """`["ecg,eda"]`, `["ch1=ecg", "GSR=eda"]` or "ecg,eda" -> one item per channel declaration."""
    from mllm_mer.media.physio.signals import parse_declarations

    items = [values] if isinstance(values, str) else list(values or ())
    found = tuple(part.strip() for item in items for part in str(item).split(",") if part.strip())
    parse_declarations(found)  # an unknown type fails now, on one line, not at every sample
    return found


def resolve_prompt(model: ModelConfig, prompt: PromptConfig, media: MediaConfig,
                   default_labels: str | None = None, default_template: str = "zero_shot",
                   retrieval: RetrievalConfig | None = None, client: ClientConfig | None = None) -> PromptSetup:
    """The run's label scheme, template, modalities, mode and media settings, in one pass down: the flags
    checked, the adapter's saved prompt read, what the names point to loaded (template, label set,
    calibration, model family), then the flags, the adapter's prompt and the defaults combined. `client`:
    the server an adapter named without its directory is asked for its prompt (backend openai)."""
    given = {"labels": prompt.labels, "template": prompt.template, "modalities": split_modalities(prompt.modalities)}
    saved, adapter_dir = adapter_prompt(model, client, labels_given=prompt.labels is not None)
    template = prompt.template or saved.get("template") or default_template
    load_template(template)  # fail now, not at the first sample
    needs = frozenset({"index"}) if needs_demonstrations(template) else frozenset()  # read once, with the template
    scheme = load_label_scheme(prompt.labels or saved.get("labels") or default_labels or "meld")
    same_labels = prompt.labels is None or "labels" not in saved or same_scheme(scheme, saved["labels"])
    if prompt.label_map:  # the map is part of the scheme's name, so of the run's identity
        scheme = with_label_map(scheme, prompt.label_map, named=True)
    check_list_answers(scheme, prompt.mode == "score")
    temperatures = {}
    if prompt.calibration:
        from mllm_mer.stages.calibration import load as load_calibration

        calibration = load_calibration(prompt.calibration)
        calibration.check(scheme, prompt.calibration)
        temperatures = dict(calibration.temperatures)
    family = known_family(model.model)  # its frame budget and audio window (None: the registry cannot tell)
    native = think_block(model.model) if model.model else None  # its own think block, if it thinks
    _warn_differences(given, saved, adapter_dir, same_labels)
    return PromptSetup(scheme=scheme, template=template,
                       modalities=given["modalities"] or split_modalities(saved.get("modalities")) or MODALITIES,
                       mode=prompt.mode, media=media_settings(media, family, saved.get("media")),
                       max_text_chars=prompt.max_text_chars, temperatures=temperatures,
                       retrieve_k=(retrieval or RetrievalConfig()).retrieve_k,
                       hear_seconds=family.audio_seconds if family else 0.0,
                       reasoning=_reasoning(prompt, saved.get("reasoning"), model.model, native), needs=needs)


def _warn_differences(given: dict[str, Any], saved: dict[str, Any], adapter_dir: str | None,
                      same_labels: bool) -> None:
    """A flag that differs from what the adapter was trained with wins, with a warning."""
    for key, value in given.items():
        if value is None or key not in saved:
            continue
        if key == "labels":
            differs = not same_labels  # two names (a bundled name, a file) may hold the same label set
        elif key == "modalities":
            differs = tuple(value) != split_modalities(saved[key])
        else:
            differs = str(value) != str(saved[key])
        if differs:
            log.warning("%s: the adapter at %s was trained with %s=%s; this run uses %s", key, adapter_dir, key,
                        saved[key], value)


def reasoning_for(prompt: PromptConfig, model: str | None, saved: dict[str, Any] | None = None) -> Reasoning | None:
    """The run's reasoning block: the flags, else the adapter's training order, else none (the answer first)."""
    return _reasoning(prompt, saved, model, think_block(model) if model else None)


def _reasoning(prompt: PromptConfig, saved: dict[str, Any] | None, model: str | None,
               native: Reasoning | None) -> Reasoning | None:
    """`reasoning_for`, the model's own think block (`native`; None: it has none) already looked up."""
    saved = saved if isinstance(saved, dict) else {}
    order = prompt.reasoning or saved.get("order") or "none"
    if order == "none":
        return None
    bound = int(prompt.max_reasoning_tokens or saved.get("max_tokens") or DEFAULT_REASONING_TOKENS)
    if order == "before":
        return replace(PROMPTED_BLOCK, max_tokens=bound)
    if native is None:
        raise ValueError(f"--reasoning native: {model} has no think block (its chat template never opens <think> "
                         "and it is not a known thinking checkpoint); use --reasoning before (any model) or none, "
                         "or a thinking checkpoint such as Qwen/Qwen3-VL-8B-Thinking")
    return replace(native, max_tokens=bound)


def resolve_strategy(strategy: StrategyConfig | None, setup: PromptSetup) -> Strategy:
    """The run's strategy, with its own options (a combination that cannot work: ValueError)."""
    built = build_strategy(strategy or StrategyConfig(), setup.scheme, setup.mode)
    if setup.reasoning is not None and not getattr(built, "reasons", False):
        raise ValueError(f"--reasoning {setup.reasoning.order}: the {built.name} strategy does not reason before "
                         "its answers yet; use --strategy single (with --samples N for reasoning paths) or agent, "
                         "or --reasoning none")
    return built
