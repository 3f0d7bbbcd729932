"""The agent loop: gather evidence with tools, then answer, every sample of a batch in lockstep.

The conversation starts from the single-pass prompt (same evidence, same label sets). At each
step the model writes one action, `{NAME: {ARGS}}` (the fewest tokens), constrained to a schema that
is a choice over the tools this sample can use now, so every action is valid; the tool runs and
its observation (text, and frames as images) is the next user turn. At the last step only
`answer` is offered, so every run ends. On a streaming backend each episode is a flow
(`episode_flow`): its next step goes out the moment its last one is read, whatever the other
episodes are doing; in batches, step t of every unfinished sample is one backend call
(`run_episodes`). vLLM's prefix cache keeps the growing conversations cheap. Label probabilities come
from the usual constrained scoring, continuing the final prompt after `{"answer":`.

A run that reasons (`--reasoning before|native`) thinks before every action (ReAct): a short block in the
run's own markers, unconstrained and bounded (`THOUGHT_TOKENS`, or the run's smaller bound), written by
the reasoning stage, then the action under its grammar as a continuation of the same turn. Each thought
stays in the conversation and in the trace, and the answer's labels are scored after the last one.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import cache
from typing import Any

import jsonschema

from mllm_mer.backends.base import Backend
from mllm_mer.core.paths import PROMPTS_DIR
from mllm_mer.core.types import Prediction, Prompt, Reasoning
from mllm_mer.prompting import answer_schema
from mllm_mer.stages.reasoning import reason, thought_flow
from mllm_mer.stages.requests import Ask, Flow
from mllm_mer.stages.scoring import add_probabilities, call_isolating, probabilities_flow, refused
from mllm_mer.strategies.agent.tools import (
    Episode,
    Toolbox,
    canonical,
    describe_tools,
    described,
    offered,
    run_tool,
)

ANSWER_LEAD = '{"answer":'
THOUGHT_TOKENS = 96  # a thought between two steps is short: the run's bound, capped here


def action_schema(tools: dict[str, dict[str, Any]], answer: dict[str, Any]) -> dict[str, Any]:
    """One JSON object with one key, the tool's name, holding its arguments; `answer` holds the answer object."""
    options = [{"type": "object", "properties": {name: args}, "required": [name], "additionalProperties": False}
               for name, args in {**tools, "answer": answer}.items()]
    return options[0] if len(options) == 1 else {"anyOf": options}


def thought_block(reasoning: Reasoning | None) -> Reasoning | None:
    """The block each step thinks in: the run's own markers, with a small bound."""
    return None if reasoning is None else replace(reasoning, max_tokens=min(reasoning.max_tokens, THOUGHT_TOKENS))


@cache
def tools_instructions(tools: tuple[str, ...], max_steps: int, thought: Reasoning | None = None) -> str:
    """The system prompt's part on tools (the same for every sample: a shared, cached prefix; rendered once)."""
    from jinja2.sandbox import SandboxedEnvironment

    template = SandboxedEnvironment().from_string((PROMPTS_DIR / "agent" / "tools.jinja").read_text())
    return template.render(tools=describe_tools(tools), max_steps=max_steps,
                           thought=thought.order if thought else "none",
                           thought_tokens=thought.max_tokens if thought else 0).strip()


def start(prompt: Prompt, sample, media, box: Toolbox, draw: int = 0) -> Episode:
    """An episode over a ready single-pass prompt."""
    from mllm_mer.media.video import probe

    setup = box.setup
    messages = [dict(m) for m in prompt.messages]
    messages[0]["content"] = messages[0]["content"] + "\n\n" + tools_instructions(
        described(box.tools, prompt.media), box.max_steps, thought_block(prompt.reasoning))
    # All looks together add at most the clip's frame budget, and never more images than the backend takes.
    budget = setup.media.max_frames
    if box.image_limit is not None:
        budget = min(budget, box.image_limit - len(prompt.images))
    ep = Episode(sample=sample, media=media, first=prompt, messages=messages, draw=draw, frames_left=max(0, budget))
    lo = sample.start or 0.0
    if media.duration:
        hi = min(sample.end, media.duration) if sample.end is not None else media.duration
        ep.span = (lo, hi) if hi > lo else None
    if "audio" in setup.modalities and "listen" in box.tools:
        try:
            if sample.audio and probe(sample.audio)[1]:
                ep.sound = (sample.audio, None, None)
            elif sample.video and probe(sample.video)[1]:
                ep.sound = (sample.video, sample.start, sample.end)
        except Exception:  # an unreadable file: the single-pass media stage already said why
            ep.sound = None
        if ep.sound and ep.span is None and ep.sound[0] == sample.audio:
            from mllm_mer.media.audio import MAX_SOUND_SECONDS, SAMPLE_RATE, load_audio_upto

            ep.waveform = load_audio_upto(sample.audio, None, None, MAX_SOUND_SECONDS)[0]  # as the media stage reads it
            ep.span = (0.0, round(len(ep.waveform) / SAMPLE_RATE, 2)) if len(ep.waveform) else None
    return ep


def _prompt(ep: Episode, schema: dict[str, Any]) -> Prompt:
    first = ep.first
    return Prompt(sample_id=first.sample_id, messages=list(ep.messages), schema=schema, label_sets=first.label_sets,
                  with_rationale=first.with_rationale, media=first.media, observation_images=tuple(ep.images),
                  observation_audios=tuple(ep.audios),
                  answer_lead=ANSWER_LEAD, cue_modalities=first.cue_modalities,
                  reasoning=thought_block(first.reasoning))


def step_prompt(ep: Episode, box: Toolbox, step: int) -> Prompt:
    """The prompt of an episode's step: its conversation so far, constrained to the actions open now."""
    final = step >= box.max_steps
    return _prompt(ep, action_schema({} if final else offered(ep, box),
                                     answer_schema(ep.first.label_sets, ep.first.with_rationale,
                                                   ep.first.cue_modalities)))


def _tokens(backend: Backend, text: str) -> int | None:
    tokenizer = backend.tokenizer
    return len(tokenizer(text, add_special_tokens=False)["input_ids"]) if tokenizer is not None else None


def _next_turn(step: int, max_steps: int) -> str:
    left = max_steps - step
    return "Answer now." if left <= 1 else f"Call another tool or answer ({left} actions left)."


def act(ep: Episode, prompt: Prompt, raw: str, step: int, box: Toolbox, tokens: int | None) -> None:
    """Read one action, validate it, run its tool (or finish), and extend the conversation."""
    from mllm_mer.core.parsing import parse_answer

    # The step's thought comes first in its trace entry, as it came first in the turn.
    head: dict[str, Any] = {"step": step}
    if prompt.thought is not None:
        head["thought"] = {"text": prompt.thought.text, "tokens": prompt.thought.tokens, "cut": prompt.thought.cut}
    try:
        action = json.loads(raw)  # strict, as parsing is: what a standard client cannot read fails here too
        jsonschema.validate(action, prompt.schema)
    except (json.JSONDecodeError, jsonschema.ValidationError) as error:
        why = error.msg if isinstance(error, json.JSONDecodeError) else error.message
        ep.trace.append({**head, "tool": None, "raw": raw[:500], "error": why, "tokens": tokens})
        ep.prediction = Prediction.failure(ep.sample.id, f"step {step}: not a valid action ({why})", raw=raw)
        return
    [(tool, args)] = action.items()
    # The turn as written: the thought (when the step reasoned), then the action.
    ep.messages.append({"role": "assistant", "content": (prompt.written() if prompt.thought else "") + raw})
    if tool == "answer":
        ep.trace.append({**head, "tool": "answer", "args": args, "tokens": tokens})
        ep.prediction = parse_answer(json.dumps(args, ensure_ascii=False), prompt.label_sets, ep.sample.id,
                                     prompt.cue_modalities)
        ep.prediction.raw = raw  # what the model wrote
        ep.last_prompt = prompt
        return
    observation = run_tool(tool, ep, box, args)
    ep.trace.append({**head, "tool": tool, "args": args, "observation": observation.summary,
                     "images": len(observation.images), "audios": len(observation.audios), "tokens": tokens})
    ep.images.extend(observation.images)
    ep.audios.extend(observation.audios)
    content = [{"type": "audio"} for _ in observation.audios] + [{"type": "image"} for _ in observation.images]
    content.append({"type": "text", "text": f"<observation tool=\"{tool}\">\n{observation.text}\n</observation>\n"
                                            + _next_turn(step, box.max_steps)})
    ep.messages.append({"role": "user", "content": content})


def run_episodes(backend: Backend, episodes: Sequence[Episode], box: Toolbox, adapter: str | None = None,
                 with_probabilities: bool = True, temperature: float = 0.0,
                 on_stage: Callable[[str], None] = lambda stage: None) -> None:
    """Runs every episode to its answer (or failure), in lockstep; fills `ep.prediction`."""
    for step in range(1, box.max_steps + 1):
        active = [ep for ep in episodes if ep.prediction is None]
        if not active:
            break
        on_stage(f"agent step {step}/{box.max_steps}: {len(active)} deciding")
        prompts = [step_prompt(ep, box, step) for ep in active]
        seeds = [1_000 * ep.draw + step for ep in active]
        thought, raws = decide(backend, prompts, seeds, adapter, temperature)
        for ep, prompt, ready, raw in zip(active, prompts, thought, raws, strict=True):
            if isinstance(raw, Exception):
                ep.prediction = refused(prompt, raw, f"step {step}" + (" (its thought)" if ready is raw else ""))
                continue
            act(ep, ready, raw, step, box, _tokens(backend, raw))
    if with_probabilities:  # the final answers' labels, scored where they were written
        answered = [ep for ep in episodes if ep.prediction.ok and ep.last_prompt is not None]
        predictions = [ep.prediction for ep in answered]
        add_probabilities(backend, [ep.last_prompt for ep in answered], predictions, adapter, on_stage)
        for ep, prediction in zip(answered, predictions, strict=True):
            ep.prediction = prediction
    for ep in episodes:
        close(ep)


def episode_flow(backend: Backend, ep: Episode, box: Toolbox, with_probabilities: bool = True,
                 temperature: float = 0.0) -> Flow:
    """One episode to its answer (or failure), a step at a time, as `run_episodes` runs it; gives the
    prediction."""
    for step in range(1, box.max_steps + 1):
        prompt = step_prompt(ep, box, step)
        seed = 1_000 * ep.draw + step
        ready = yield from thought_flow(prompt, temperature, seed)
        if isinstance(ready, Exception):
            ep.prediction = refused(prompt, ready, f"step {step} (its thought)")
            break
        raw = yield Ask(ready, temperature, seed)
        if isinstance(raw, Exception):
            ep.prediction = refused(prompt, raw, f"step {step}")
            break
        act(ep, ready, raw, step, box, _tokens(backend, raw))
        if ep.prediction is not None:
            break
    if with_probabilities and ep.prediction.ok and ep.last_prompt is not None:
        ep.prediction = yield from probabilities_flow(ep.last_prompt, ep.prediction)
    close(ep)
    return ep.prediction


def close(ep: Episode) -> None:
    """The answer's record of its episode: the trace, and the thoughts as its reasoning."""
    ep.prediction.extras["agent"] = {"trace": ep.trace}
    keep_thoughts(ep)


def decide(backend: Backend, prompts: list[Prompt], seeds: list[int], adapter: str | None, temperature: float
           ) -> tuple[list[Prompt | Exception], list[str | Exception]]:
    """Each step prompt after its thought (as it is where the run does not reason), and the action written
    after it; a prompt the backend refuses gets its error in both lists."""
    thought = reason(backend, prompts, adapter, temperature, seeds)
    ready = [(p, s) for p, s in zip(thought, seeds, strict=True) if isinstance(p, Prompt)]
    written = iter(call_isolating(
        lambda batch: backend.generate([p for p, _ in batch], adapter=adapter, temperature=temperature,
                                       seeds=[s for _, s in batch]), ready))
    return thought, [p if isinstance(p, Exception) else next(written) for p in thought]


def keep_thoughts(ep: Episode) -> None:
    """The answer's reasoning: the episode's thoughts in step order (one note per thought cut at its bound)."""
    steps = [(s["step"], s["thought"]) for s in ep.trace if s.get("thought")]
    block = ep.first.reasoning
    if not steps or block is None:
        return
    bound = thought_block(block).max_tokens
    ep.prediction.reasoning = {"order": block.order, "text": "\n\n".join(f"step {k}: {t['text']}" for k, t in steps),
                               "tokens": sum(t["tokens"] for _, t in steps), "cut": any(t["cut"] for _, t in steps)}
    ep.prediction.notes.extend(
        f"step {k}: the thought was cut at its bound of {bound} tokens (--max-reasoning-tokens, at most "
        f"{THOUGHT_TOKENS} between agent steps); the action follows it as far as it went"
        for k, t in steps if t["cut"])


def replay(ep: Episode, box: Toolbox, actions: list[dict[str, Any]]) -> Episode:
    """Runs scripted actions ({tool, args}) through the real tools (training on traces): the episode ends up with the
    conversation the agent would have had. An action the step's schema does not allow is an error."""
    for step, action in enumerate(actions, 1):
        prompt = step_prompt(ep, box, step)
        raw = json.dumps(canonical({action["tool"]: action.get("args", {})}), ensure_ascii=False, separators=(",", ":"))
        act(ep, prompt, raw, step, box, None)
        if ep.prediction is not None and not ep.prediction.ok:
            raise ValueError(f"sample {ep.sample.id}: scripted step {step} is not a valid action here "
                             f"({ep.prediction.error})")
        if ep.prediction is not None:
            if step < len(actions):
                raise ValueError(f"sample {ep.sample.id}: the trace goes on after its answer (step {step})")
            return ep
    raise ValueError(f"sample {ep.sample.id}: the trace does not end with an answer")
