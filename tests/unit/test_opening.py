"""The answer's forced opening and the grammar of the rest accept exactly what the answer schema accepts."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest
import xgrammar as xgr
from xgrammar.testing import _is_grammar_accept_string as accepts

from mllm_mer.core.labels import load_label_scheme
from mllm_mer.core.types import LabelSet, Prompt
from mllm_mer.prompting import answer_schema, format_answer
from mllm_mer.prompting.opening import answer_opening

MELD = load_label_scheme("meld").label_sets
ODD = (LabelSet(task="情绪", labels=("高兴", 'say "no"', "back\\slash", "neutral")),)
OPEN_LIST = (LabelSet(task="emotion", labels=("joy", "anger"), multi_label=True),)


def _prompt(label_sets, rationale=False, cues=("lexical",), lead=""):
    return Prompt("s", [], answer_schema(label_sets, rationale, cues), label_sets, rationale,
                  cue_modalities=cues, answer_lead=lead)


def _answers(label_sets, rationale, cues):
    """Answers the schema accepts: every label of the first task, the other tasks' first label."""
    out = []
    for label in label_sets[0].labels:
        answer = {ls.task: ls.labels[0] for ls in label_sets} | {label_sets[0].task: label}
        answer |= {"rationale": 'a "quoted" reason', "cues": {m: "a cue" for m in cues}}
        out.append(format_answer(answer, label_sets, rationale, cues))
    return out


@pytest.mark.parametrize("label_sets,rationale", [(MELD[:1], False), (MELD, True), (MELD, False), (ODD, True)])
def test_opening_plus_rest_accepts_what_the_schema_accepts(label_sets, rationale):
    prompt = _prompt(label_sets, rationale)
    schema = xgr.Grammar.from_json_schema(json.dumps(prompt.schema), any_whitespace=False, separators=(",", ":"))
    opening = answer_opening(prompt)
    rest = xgr.Grammar.from_ebnf(opening.grammar)
    assert opening.text == json.dumps({label_sets[0].task: ""}, ensure_ascii=False, separators=(",", ":"))[:-2]
    good = _answers(label_sets, rationale, prompt.cue_modalities)
    label = json.dumps(label_sets[0].labels[0], ensure_ascii=False)[1:-1]
    bad = [good[0].replace(label, label + "x", 1), good[0].replace(label, label[:-1], 1),
           good[0][:-1], good[0] + " ", good[0].replace(":", ": ", 1)]
    assert all(t.startswith(opening.text) for t in good)
    for text in good + bad:  # an answer that does not start with the opening is no answer to the schema
        opened = text.startswith(opening.text) and accepts(rest, text[len(opening.text):])
        assert opened == accepts(schema, text), text
    assert all(accepts(schema, t) for t in good) and not any(accepts(schema, t) for t in bad)


def test_no_opening_where_the_answer_is_not_the_first_thing_or_not_one_label():
    assert answer_opening(_prompt(MELD, lead='{"tool":"answer","args":')) is None  # an agent's action
    assert answer_opening(_prompt(OPEN_LIST)) is None  # a list answer opens with `[`
    plain = _prompt(MELD)
    assert answer_opening(replace(plain, label_sets=())) is None
