"""A pinned local judge: any model the project runs, greedy, its verdicts held to a JSON schema, its
prompts versioned files (`prompts/judges/*.jinja`), its identity recorded, its verdicts cached by content.

    judge = Judge(backend, identity, cache=run_dir / "judge_cache.jsonl")
    verdicts = judge.ask("synonyms", [{"words": ["happy", "joyful", "worried"]}, ...])

A verdict is asked once per (judge identity, task, rendered prompt): rescoring the same files makes
no call, and a judging run killed at any point resumes with every verdict once (each is appended as
one line once its batch finishes; a torn last line is ignored).
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from mllm_mer.core.paths import PROMPTS_DIR
from mllm_mer.core.types import Prompt

JUDGES_DIR = PROMPTS_DIR / "judges"
MAX_WORD = 40  # characters in one emotion word
BATCH = 16  # verdicts asked per backend call (and saved together)


def _words_schema(fields: dict[str, Any]) -> dict[str, Any]:
    words = list(dict.fromkeys(fields["words"]))  # a group may hold only the words it was given
    return {"type": "object", "additionalProperties": False, "required": ["groups"], "properties": {"groups": {
        "type": "array", "minItems": 1, "maxItems": len(words),
        "items": {"type": "array", "minItems": 1, "maxItems": len(words), "items": {"enum": words}}}}}


def _extract_schema(fields: dict[str, Any]) -> dict[str, Any]:
    word = {"type": "string", "pattern": f"^[a-z][a-z -]{{0,{MAX_WORD - 1}}}$"}
    return {"type": "object", "additionalProperties": False, "required": ["emotions"],
            "properties": {"emotions": {"type": "array", "maxItems": 8, "items": word}}}


def _reference_schema(fields: dict[str, Any]) -> dict[str, Any]:
    score = {"type": "integer", "minimum": 0, "maximum": 10}
    return {"type": "object", "additionalProperties": False, "required": ["clue_overlap", "label_overlap"],
            "properties": {"clue_overlap": score, "label_overlap": score}}


def _preference_schema(fields: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "required": ["better"],
            "properties": {"better": {"enum": ["A", "B", "tie"]}}}


# task -> the schema its verdict must follow, built from the fields it is asked about
TASKS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "synonyms": _words_schema, "extract": _extract_schema, "reference": _reference_schema,
    "preference": _preference_schema}


def _environment() -> SandboxedEnvironment:
    return SandboxedEnvironment(loader=jinja2.FileSystemLoader(str(JUDGES_DIR)), undefined=jinja2.StrictUndefined,
                                autoescape=False)


def prompt_files() -> dict[str, str]:
    """Each judge prompt file's sha256: part of the judge's identity."""
    return {task: hashlib.sha256((JUDGES_DIR / f"{task}.jinja").read_bytes()).hexdigest() for task in TASKS}


def _key(identity: dict[str, Any], task: str, text: str) -> str:
    return hashlib.sha256(json.dumps([identity, task, text], sort_keys=True).encode()).hexdigest()


class Judge:
    """Asks verdicts of a loaded backend; `identity` is what `identity.judge_identity` reports."""

    def __init__(self, backend, identity: dict[str, Any], cache: Path | None = None):
        self.backend, self.identity, self.cache = backend, identity, cache
        self.calls = 0  # verdicts asked of the model (not served from the cache)
        self._env = _environment()
        self._known = _read_cache(cache) if cache else {}

    def prompt(self, task: str, fields: dict[str, Any]) -> Prompt:
        if task not in TASKS:
            raise ValueError(f"no judge task {task!r}; tasks: {', '.join(TASKS)}")
        text = self._env.get_template(f"{task}.jinja").render(**fields).strip()
        return Prompt(sample_id=_key(self.identity, task, text), messages=[{"role": "user", "content": [
            {"type": "text", "text": text}]}], schema=TASKS[task](fields), label_sets=(), with_rationale=False)

    def ask(self, task: str, items: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """One verdict per item (a dict of the task template's fields), in input order."""
        prompts = [self.prompt(task, fields) for fields in items]
        todo = list({p.sample_id: p for p in prompts if p.sample_id not in self._known}.values())
        for start in range(0, len(todo), BATCH):
            batch = todo[start:start + BATCH]
            answers = self.backend.generate(batch)  # greedy: a judge is deterministic
            self.calls += len(batch)
            found = {p.sample_id: _verdict(text) for p, text in zip(batch, answers, strict=True)}
            self._save({k: v for k, v in found.items() if "error" not in v})
            self._known.update(found)
        return [self._known[p.sample_id] for p in prompts]

    def _save(self, verdicts: dict[str, dict[str, Any]]) -> None:
        if not self.cache or not verdicts:
            return
        self.cache.parent.mkdir(parents=True, exist_ok=True)
        lines = "".join(json.dumps({"key": k, "verdict": v}) + "\n" for k, v in verdicts.items())
        with open(self.cache, "a", encoding="utf-8") as out:  # one write, then flushed to disk
            out.write(lines)
            out.flush()
            os.fsync(out.fileno())


def _verdict(text: str) -> dict[str, Any]:
    try:
        found = json.loads(text)
    except json.JSONDecodeError:
        return {"error": f"the judge's answer is not JSON (cut short?): {text[:80]!r}"}
    return found if isinstance(found, dict) else {"error": "the judge's answer is not an object"}


def _read_cache(path: Path) -> dict[str, dict[str, Any]]:
    known: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return known
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a line torn by a kill: its verdicts are asked again
            continue
        known[row["key"]] = row["verdict"]
    return known
