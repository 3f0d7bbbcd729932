"""The answer's forced opening, written into the prompt instead of decoded.

Under the answer schema the first characters of every answer are fixed: `{"emotion":"` (the first
task's key and the opening quote of its label). Decoding them costs one engine step per token, and a
model that spells them in small pieces (an untrained one, a small vocabulary) spends most of a
label-only answer there. Every backend instead appends the opening to the rendered prompt (it is
prefilled with it, in the canonical tokenisation the answer scoring reads after too) and constrains
the rest of the answer with a grammar that accepts exactly what the schema accepts after the opening,
then hands back opening + generated text: the answer the pipeline parses is the same whole object.

The grammar is the schema's own xgrammar grammar with its root rule's head (`{`, the key, `:` and the
first value's alternatives) replaced by the labels without their opening quote. Where that head is
not in the form expected (an agent's action lead, a list answer first, another xgrammar), there is no
opening and the answer is decoded under its schema as before.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache

from mllm_mer.core.types import Prompt


@dataclass(frozen=True)
class Opening:
    text: str  # written after the rendered prompt: the answer's first characters
    grammar: str  # xgrammar EBNF of the rest of the answer (what the schema accepts after `text`)


def answer_opening(prompt: Prompt) -> Opening | None:
    """The prompt's forced answer opening and the grammar of the rest; None where the answer is decoded
    whole under its schema (an answer that follows a lead, a list answer first, no label set)."""
    if prompt.answer_lead or not prompt.label_sets or prompt.label_sets[0].list_answer:
        return None
    first = prompt.label_sets[0]
    return _opening(json.dumps(prompt.schema), first.task, tuple(first.labels))


# The root rule's head: `{`, the first key (a literal with its escapes), `:`, and the rule of its value.
_HEAD = re.compile(r'^root ::= \(\("\{" "(?:[^"\\]|\\.)*" ":" \w+ ', re.MULTILINE)


@cache
def _opening(schema: str, task: str, labels: tuple[str, ...]) -> Opening | None:
    import xgrammar as xgr

    # Compact separators: the answer form every backend decodes (vLLM's disable_any_whitespace).
    ebnf = str(xgr.Grammar.from_json_schema(schema, any_whitespace=False, separators=(",", ":")))
    found = _HEAD.search(ebnf)  # the first property is the first task's (answer_schema's order)
    if found is None:
        return None
    rule = "opening_labels"
    # A label as the answer writes it inside its quotes (JSON escapes, non-ASCII kept), as a literal.
    alternatives = " | ".join(f"({_literal(json.dumps(label, ensure_ascii=False)[1:-1])})" for label in labels)
    rest = ebnf[:found.start()] + f'root ::= (({rule} "\\"" ' + ebnf[found.end():]
    opening = json.dumps({task: ""}, ensure_ascii=False, separators=(",", ":"))[:-2]  # {"emotion":"
    return Opening(text=opening, grammar=f"{rest}\n{rule} ::= ({alternatives})")


def _literal(text: str) -> str:
    """`text` as an EBNF string literal (xgrammar's escapes are JSON's)."""
    return json.dumps(text, ensure_ascii=False)
