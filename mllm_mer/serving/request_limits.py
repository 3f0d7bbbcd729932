"""What one request may ask of the server, and the answers' JSON kept valid under any client's schema.

- The work a request asks for is bounded before vLLM sees it: the size of a schema or grammar
  (`MLLM_MER_MAX_SCHEMA_KB`), the enum values and choices in it (`MLLM_MER_MAX_ENUM`: grammar compile
  time grows with them), and the prompts in one `/v1/completions` request (`MLLM_MER_MAX_PROMPTS`;
  `n` alone does not bound work when `prompt` is a list). `mllm-mer serve` sets these from its
  options; each refusal names the limit.
- Free strings in a client's JSON schema get the project's own safe-string rule (`free_text`):
  xgrammar lets a bare `{"type": "string"}` (with or without `maxLength`) emit raw control
  characters, which JSON forbids, so such a string is rewritten to the pattern form that admits none
  and carries its length bound (counted in characters the client receives: the pattern admits only
  well-formed UTF-8). A string with a pattern of the client's own cannot be kept valid and is refused.
"""
from __future__ import annotations

import json
import os
import re
from typing import Any

from mllm_mer.prompting import SAFE_CHAR, free_text

MAX_SCHEMA_BYTES = int(float(os.environ.get("MLLM_MER_MAX_SCHEMA_KB", "64")) * 1024)
MAX_ENUM = int(os.environ.get("MLLM_MER_MAX_ENUM", "1000"))
MAX_PROMPTS = int(os.environ.get("MLLM_MER_MAX_PROMPTS", "8"))
# Where a request can carry a grammar (vLLM's spellings, old and new).
GRAMMAR_KEYS = ("response_format", "guided_json", "guided_regex", "guided_grammar", "guided_choice",
                "structured_outputs")
# free_text's own patterns, and their earlier form (a negated class, which let malformed UTF-8 through).
_OLD_CHAR = '[^\\x00-\\x1f"\\\\]'
_SAFE_PATTERN = re.compile(f"^{re.escape('^')}(?:(?:{re.escape(SAFE_CHAR)}|{re.escape(_OLD_CHAR)})"
                           + r"\{0,(\d+)\})+\$$")
_UNBOUNDED = {"type": "string", "pattern": f"^{SAFE_CHAR}*$"}


def _enum_values(value: Any) -> int:
    if isinstance(value, dict):
        own = len(value["enum"]) if isinstance(value.get("enum"), list) else 0
        return own + sum(_enum_values(v) for k, v in value.items() if k != "enum")
    if isinstance(value, list):
        return sum(_enum_values(v) for v in value)
    return 0


def check_work(body: dict[str, Any], route: str) -> str | None:
    """Why a request asks for more work than one request may, or None."""
    grammar = {k: body[k] for k in GRAMMAR_KEYS if body.get(k) is not None}
    if grammar:
        size = len(json.dumps(grammar, separators=(",", ":")))
        if size > MAX_SCHEMA_BYTES:
            return f"the schema or grammar is {size} bytes (at most {MAX_SCHEMA_BYTES}: MLLM_MER_MAX_SCHEMA_KB)"
        choices = body.get("guided_choice")
        values = _enum_values(grammar) + (len(choices) if isinstance(choices, list) else 0)
        if values > MAX_ENUM:
            return f"the schema lists {values} enum values or choices (at most {MAX_ENUM}: MLLM_MER_MAX_ENUM)"
    prompts = _prompt_count(body.get("prompt")) if route == "/v1/completions" else 1
    if prompts > MAX_PROMPTS:
        return f"{prompts} prompts in one request (at most {MAX_PROMPTS}: MLLM_MER_MAX_PROMPTS)"
    return None


def _prompt_count(prompt: Any) -> int:
    """A string or a list of token ids is one prompt; a list of strings or of token lists is several."""
    if not isinstance(prompt, list) or not prompt or all(isinstance(p, int) for p in prompt):
        return 1
    return len(prompt)


def _client_schemas(body: dict[str, Any]) -> list[tuple[dict, str]]:
    """(holder, key) of each JSON schema the request asks answers to follow."""
    found = []
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and isinstance(fmt.get("json_schema"), dict) and "schema" in fmt["json_schema"]:
        found.append((fmt["json_schema"], "schema"))
    if "guided_json" in body:
        found.append((body, "guided_json"))
    outputs = body.get("structured_outputs")
    if isinstance(outputs, dict) and "json" in outputs:
        found.append((outputs, "json"))
    return found


def schema_texts(body: dict[str, Any]) -> list[str]:
    """The request's schemas as text (to tell whether keep_strings_valid changed any)."""
    return [json.dumps(holder[key], sort_keys=True) for holder, key in _client_schemas(body)]


def keep_strings_valid(body: dict[str, Any]) -> str | None:
    """Rewrite every free string in the request's schemas to the safe-string form (in place); the reason
    when one cannot be kept valid."""
    for holder, key in _client_schemas(body):
        schema = holder[key]
        if isinstance(schema, str):  # vLLM also takes a schema as JSON text
            try:
                schema = json.loads(schema)
            except json.JSONDecodeError:
                return "a JSON schema given as text that is not JSON"
        try:
            holder[key] = _safe(schema)
        except ValueError as error:
            return str(error)
    return None


def _safe(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_safe(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _safe(v) for k, v in schema.items()}
    kinds = out.get("type") if isinstance(out.get("type"), list) else [out.get("type")]
    if "string" not in kinds or "enum" in out or "const" in out or "format" in out:
        return out
    if "pattern" in out:
        if not _SAFE_PATTERN.match(str(out["pattern"])):
            raise ValueError("a string pattern in the schema that the server cannot keep valid JSON (raw control "
                             "characters, quotes and backslashes must not be allowed); use enum or maxLength")
        # The same bound in the well-formed form: every repeat one character the client receives.
        return {**out, **free_text(sum(int(n) for n in re.findall(r"\{0,(\d+)\}", out["pattern"])))}
    if kinds != ["string"]:
        raise ValueError("a free string that may also be another type: the server cannot keep it valid JSON")
    bound = out.get("maxLength")
    safe = free_text(int(bound)) if isinstance(bound, int) and not isinstance(bound, bool) and bound >= 0 \
        else dict(_UNBOUNDED)
    rest = {k: v for k, v in out.items() if k not in ("type", "maxLength", "minLength", "pattern")}
    return {**rest, **safe}


__all__ = ["MAX_ENUM", "MAX_PROMPTS", "MAX_SCHEMA_BYTES", "check_work", "keep_strings_valid", "schema_texts"]
