"""The one prompt path: Sample + media + label sets + template -> chat messages + answer schema.

Messages are in the HF/OpenAI content-part form. The transformers backend renders
them with the model's own chat template, vLLM gets the same rendering, the OpenAI
client converts the media parts to data URLs, and training appends the answer to
exactly this prompt.
"""
from __future__ import annotations

import ast
import contextlib
import json
import re
from collections.abc import Iterator
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from mllm_mer.core.paths import PROMPTS_DIR
from mllm_mer.core.types import (
    CUE_MODALITIES,
    MODALITIES,
    LabelScheme,
    LabelSet,
    MediaInputs,
    Prompt,
    Reasoning,
    Sample,
    Turn,
)
from mllm_mer.media.audio import SAMPLE_RATE

TEMPLATES_DIR = PROMPTS_DIR / "templates"
# Bounded strings keep a constrained answer finite even from a random model. In the worst
# case (3 tokens per character) the whole answer stays under 2048 tokens.
RATIONALE_MAX_CHARS = 240
CUE_MAX_CHARS = 80

# Delimiters of quoted data and chat-control tokens: removed from data so that a transcript
# cannot close its own block or inject a turn.
_USER_MARKER = "=====USER====="  # base.jinja separates the system and user blocks with it
_DATA_HAZARDS = re.compile(r"</?\s*(transcript|context|vocal_cues|physio_cues|examples|observation)\b[^>]{0,40}>"
                           r"|<\|[^|<>]{1,40}\|>|[\x00-\x08\x0b-\x1f\x7f]",
                           re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u07ff\ud800-\udfff\ufffe\uffff]")  # SAFE_CHAR leaves these out


def as_data(text: str | None) -> str | None:
    if text is None:
        return None
    return " ".join(_DATA_HAZARDS.sub(" ", str(text)).split())


OPEN_MAX_WORDS = 3  # an open-vocabulary answer: one to three emotion words


def task_schema(ls: LabelSet) -> dict[str, Any]:
    """One label from the set, or (multi-label, open vocabulary) a short list of them."""
    one = {"type": "string", "enum": list(ls.labels)}
    if not ls.list_answer:
        return one
    return {"type": "array", "items": one, "minItems": 1,
            "maxItems": OPEN_MAX_WORDS if ls.open else len(ls.labels)}


def as_list(value: Any) -> list[str]:
    """A list answer's labels from a list, or a cell as corpora release them: a Python list literal
    (`"['happy', 'relieved']"`), a JSON list, or comma-separated words."""
    items = value if isinstance(value, (list, tuple)) else _list_cell(str(value or "").strip())
    return [str(x).strip() for x in items if str(x).strip()]


def _list_cell(text: str) -> list[Any]:
    if text.startswith("[") and text.endswith("]"):
        for parse in (json.loads, ast.literal_eval):
            try:
                found = parse(text)
            except (ValueError, SyntaxError, RecursionError):
                continue
            if isinstance(found, (list, tuple)):
                return list(found)
        text = text[1:-1]
    return text.split(",")


# One character of JSON string content that needs no escape, as well-formed UTF-8 only. xgrammar turns a
# class into byte ranges exactly only where each range keeps one UTF-8 length: the plain class
# `[^\x00-\x1f"\\]` admitted byte sequences that are no character (surrogates `ED A0 80`, overlong `E0 80 80`,
# `F0 80 80 80`), one repeat for the grammar but three or four U+FFFD in the text the client receives, past
# the bound. Leaving out DEL, U+07FF, the surrogates and U+FFFE/U+FFFF splits the ranges at every length
# boundary. (An alternation of one class per length is as exact but makes every token mask ~300x slower.)
SAFE_CHAR = '[^\\x00-\\x1f"\\\\\\x7f\\u07ff\\ud800-\\udfff\\ufffe\\uffff]'
_MAX_REPEAT = 120  # xgrammar's compiler fails on a bounded repeat over 128


def free_text(max_chars: int) -> dict[str, Any]:
    """A bounded string the grammar keeps valid JSON: no control character, quote or backslash.

    xgrammar turns `maxLength` into a character class that admits raw control characters (JSON
    forbids them, clients' json.loads fails), and it ignores a length bound beside a pattern: so
    the bound lives in the pattern, as repeats its compiler takes.
    """
    chunks = [_MAX_REPEAT] * (max_chars // _MAX_REPEAT) + ([max_chars % _MAX_REPEAT] if max_chars % _MAX_REPEAT else [])
    return {"type": "string", "pattern": "^" + "".join(f"{SAFE_CHAR}{{0,{n}}}" for n in chunks) + "$"}


def _plain(text: Any, max_chars: int) -> str:
    """Free text in the form the grammar produces (see free_text): for examples and training targets."""
    clean = _CONTROL.sub(" ", str(text or "")).replace('"', "'").replace("\\", "/")
    return clean[:max_chars]


def answer_schema(label_sets: tuple[LabelSet, ...], with_rationale: bool,
                  cue_modalities: tuple[str, ...] = CUE_MODALITIES) -> dict[str, Any]:
    """JSON schema of the answer: one enum per task, then rationale and cues (bounded), the cues only
    for the modalities the prompt showed (an absent one has no field to fill)."""
    props: dict[str, Any] = {ls.task: task_schema(ls) for ls in label_sets}
    if with_rationale:
        props["rationale"] = free_text(RATIONALE_MAX_CHARS)
        if cue_modalities:
            props["cues"] = {
                "type": "object",
                "properties": {m: free_text(CUE_MAX_CHARS) for m in cue_modalities},
                "required": list(cue_modalities),
                "additionalProperties": False,
            }
    return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}


def format_answer(answer: dict[str, Any], label_sets: tuple[LabelSet, ...], with_rationale: bool,
                  cue_modalities: tuple[str, ...] = CUE_MODALITIES) -> str:
    """The answer as the model should write it: compact JSON in schema key order.

    Used for few-shot examples and training targets, and it is the form that
    constrained decoding produces (no free whitespace).
    """
    ordered: dict[str, Any] = {ls.task: as_list(answer[ls.task]) if ls.list_answer else answer[ls.task]
                               for ls in label_sets}
    if with_rationale:
        ordered["rationale"] = _plain(answer.get("rationale"), RATIONALE_MAX_CHARS)
        cues = answer.get("cues") or {}
        if cue_modalities:
            ordered["cues"] = {m: _plain(cues.get(m), CUE_MAX_CHARS) for m in cue_modalities}
    return json.dumps(ordered, ensure_ascii=False, separators=(",", ":"))


def present_cues(view: dict[str, Any]) -> tuple[str, ...]:
    """The cue modalities a prompt's evidence view shows (CUE_MODALITIES order)."""
    shown = {"visual": bool(view["n_frames"] or view["has_image"]),
             "vocal": view["vocal_cues"] is not None or view["audio_seconds"] is not None,
             "lexical": view["transcript"] is not None, "context": bool(view["context"])}
    return tuple(m for m in CUE_MODALITIES if shown[m])


def answer_prefix(previous: dict[str, str], task: str) -> str:
    """The answer text up to the value of `task`, given the labels chosen before it (for scoring)."""
    head = json.dumps(previous, ensure_ascii=False, separators=(",", ":"))[:-1]
    sep = "," if previous else ""
    return head + sep + json.dumps(task) + ':"'


@contextlib.contextmanager
def _template_errors(template: str) -> Iterator[None]:
    """A template the sandbox refuses, or one that does not render, is one line naming it."""
    try:
        yield
    except jinja2.TemplateError as error:
        where = f"{template}:{error.lineno}" if getattr(error, "lineno", None) else template
        raise ValueError(f"template {where}: {error.message or type(error).__name__}") from None


@cache
def _environment(directory: str) -> jinja2.Environment:
    # Sandboxed: a user's template file must not reach Python internals.
    return SandboxedEnvironment(loader=jinja2.FileSystemLoader([directory, str(TEMPLATES_DIR)]),
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=False,
                              autoescape=False)


def available_templates() -> list[str]:
    return sorted(p.stem for p in TEMPLATES_DIR.glob("*.jinja") if p.stem != "base")


@cache
def load_template(name_or_path: str) -> jinja2.Template:
    """A bundled template by name (`zero_shot`) or a .jinja file that extends base.jinja."""
    path = Path(name_or_path)
    if path.suffix == ".jinja" and path.is_file():
        with _template_errors(name_or_path):
            return _environment(str(path.parent.resolve())).get_template(path.name)
    if (TEMPLATES_DIR / f"{name_or_path}.jinja").is_file() and name_or_path != "base":
        return _environment(str(TEMPLATES_DIR)).get_template(f"{name_or_path}.jinja")
    raise FileNotFoundError(f"unknown template {name_or_path!r}; bundled: {', '.join(available_templates())}")


def _evidence_view(sample: Sample, media: MediaInputs, modalities: frozenset[str]) -> dict[str, Any]:
    """What the template sees of a sample: data sanitised, absent or ablated modalities as None."""
    use_text, use_video, use_audio = ("text" in modalities, "video" in modalities, "audio" in modalities)
    use_physio = "physio" in modalities
    transcript = sample.transcript if sample.transcript else media.transcript
    frames = media.frames if use_video else ()
    return {
        "n_frames": len(frames),
        "frame_times": ", ".join(f"{t:.1f}" for t in media.frame_times) if frames and media.frame_times else "",
        "has_image": use_video and media.image is not None,
        "vocal_cues": as_data(media.vocal_cues or sample.vocal_cues) if use_audio else None,
        "audio_seconds": round(len(media.audio) / SAMPLE_RATE, 2) if use_audio and media.audio is not None else None,
        # A sample that names a signal file gets the physiological line ("not available" when ablated or
        # unread); one with none keeps the prompt it had before the modality existed.
        "physio_line": bool(sample.physio or media.physio_cues),
        # --physio-view plot shows the traces instead of the words (the words stay where nothing could be drawn)
        "physio_cues": as_data(media.physio_cues)
        if use_physio and not (media.physio_view == "plot" and media.physio_plot is not None) else None,
        "physio_plot": use_physio and media.physio_plot is not None,
        "context": [{"speaker": as_data(t.speaker), "text": as_data(t.text), "emotion": as_data(t.emotion)}
                    for t in sample.context] if use_text else [],
        "speaker": as_data(sample.speaker),
        "transcript": as_data(transcript) if use_text else None,
        # Rationalisation (distill): the annotated labels, given so that the model explains them.
        "hint": ", ".join(f"{task}: {as_data(str(label))}" for task, label in sample.metadata["hint"].items())
        if isinstance(sample.metadata.get("hint"), dict) else None,
    }


def _example_view(example: dict[str, Any], spec: LabelScheme, with_rationale: bool,
                  cues: tuple[str, ...]) -> dict[str, Any]:
    view = _evidence_view(
        Sample(id="example", transcript=example.get("transcript"), speaker=example.get("speaker"),
               context=tuple(_turn(t) for t in example.get("context") or ())),
        MediaInputs(vocal_cues=example.get("vocal_cues")), frozenset(MODALITIES))
    # In the answer form this prompt asks for: the cue fields of the modalities it shows.
    view["answer_json"] = format_answer(example["answer"], spec.label_sets, with_rationale, cues)
    return view


def _turn(data: dict[str, Any]) -> Turn:
    return Turn(speaker=str(data.get("speaker", "")), text=str(data.get("text", "")), emotion=data.get("emotion"))


def _demonstration_view(demo: Any) -> dict[str, Any]:
    return {"speaker": as_data(demo.speaker), "text": as_data(demo.text),
            "labels": ", ".join(f"{task}: {label}" for task, label in demo.labels.items())}


@cache
def needs_demonstrations(template: str) -> bool:
    """Whether a template shows retrieved demonstrations (it sets `with_retrieved`)."""
    with _template_errors(template):
        module = load_template(template).make_module({
            "label_sets": (), "cue_modalities": CUE_MODALITIES, "examples": [], "demonstrations": [],
            "sample": _evidence_view(Sample(id="probe"), MediaInputs(), frozenset(MODALITIES))})
    return bool(getattr(module, "with_retrieved", False))


def _with_physio(used: MediaInputs, media: MediaInputs, parts: list[dict[str, Any]]) -> MediaInputs:
    """What the prompt uses of the signals: the words, and the traces drawn as one more image after the visual."""
    if media.physio_cues:
        used = replace(used, physio_cues=media.physio_cues, physio_features=media.physio_features,
                       physio_view=media.physio_view)
    if media.physio_plot is not None:
        parts.append({"type": "image"})
        used = replace(used, physio_plot=media.physio_plot)
    return used


def build_prompt(sample: Sample, spec: LabelScheme, template: str = "zero_shot",
                 media: MediaInputs | None = None, modalities: tuple[str, ...] | None = None,
                 demonstrations: list | None = None, reasoning: Reasoning | None = None) -> Prompt:
    """`demonstrations`: retrieved labelled utterances (demonstrations.Demonstration) for templates that show them;
    `reasoning`: the prompt reasons in that block before its answer (the template asks for a `before` block)."""
    media = media or MediaInputs()
    chosen = frozenset(modalities or MODALITIES)
    unknown = chosen - set(MODALITIES)
    if unknown:
        raise ValueError(f"unknown modalities {sorted(unknown)}; choose from {', '.join(MODALITIES)}")
    tmpl = load_template(template)
    with _template_errors(template):
        flags = tmpl.make_module({"label_sets": spec.label_sets, "cue_modalities": CUE_MODALITIES, "examples": [],
                                  "demonstrations": [], "sample": _evidence_view(sample, MediaInputs(), chosen)})
    with_rationale, with_examples = bool(flags.with_rationale), bool(flags.with_examples)
    if with_examples and not spec.examples:
        raise ValueError(f"template {template!r} needs worked examples, and label set {spec.name!r} has none")
    view = _evidence_view(sample, media, chosen)
    cues = present_cues(view)
    variables = {
        "label_sets": spec.label_sets, "cue_modalities": cues,
        "with_rationale": with_rationale, "with_examples": with_examples,
        "examples": [_example_view(e, spec, with_rationale, cues) for e in spec.examples] if with_examples else [],
        "sample": view,
        "demonstrations": [_demonstration_view(d) for d in demonstrations or ()],
        "reasoning": reasoning.order if reasoning else "none",
        "max_reasoning_tokens": reasoning.max_tokens if reasoning else 0,
    }
    with _template_errors(template):
        rendered = tmpl.render(variables)
    system, user_text = (part.strip() for part in rendered.split(_USER_MARKER, 1))

    visual_parts: list[dict[str, Any]] = []
    used = MediaInputs(transcript=media.transcript, vocal_cues=media.vocal_cues, fps=media.fps,
                       duration=media.duration, vocal_features=media.vocal_features)
    if "video" in chosen:
        if media.frames:
            visual_parts.append({"type": "video"})  # the frames themselves live once, in Prompt.media
            used = MediaInputs(frames=media.frames, frame_times=media.frame_times, transcript=media.transcript,
                               vocal_cues=media.vocal_cues, fps=media.fps, duration=media.duration,
                               vocal_features=media.vocal_features, visual=media.visual)
        elif media.image is not None:
            visual_parts.append({"type": "image"})
            used = MediaInputs(image=media.image, transcript=media.transcript, vocal_cues=media.vocal_cues,
                               vocal_features=media.vocal_features)
    if "physio" in chosen:
        used = _with_physio(used, media, visual_parts)
    if "audio" in chosen and media.audio is not None:  # a family that hears: the waveform itself
        visual_parts.append({"type": "audio"})
        used = replace(used, audio=media.audio)
    messages = [
        {"role": "system", "content": system},
        {"role": "user", "content": visual_parts + [{"type": "text", "text": user_text}]},
    ]
    return Prompt(sample_id=sample.id, messages=messages,
                  schema=answer_schema(spec.label_sets, with_rationale, cues), label_sets=spec.label_sets,
                  with_rationale=with_rationale, media=used, cue_modalities=cues, reasoning=reasoning)
