"""Emotion words from free-text descriptions, deterministically (`--extract lexicon`). Pure functions.

The bundled vocabulary and its synonyms (core.emotion_wheels), with inflections folded ("angrily" ->
"angry" -> anger) and negation handled: a word within a few words after a negator in the same
clause ("not angry", "never seemed afraid") is not an emotion the text states.
"""
from __future__ import annotations

import re

from mllm_mer.core.emotion_wheels import Wheels, load_wheels

NEGATORS = frozenset({"not", "no", "never", "without", "hardly", "barely", "neither", "nor", "nothing", "isn't",
                      "wasn't", "aren't", "weren't", "doesn't", "didn't", "don't", "cannot", "can't", "won't"})
NEGATION_REACH = 4  # words after a negator it still covers ("not at all angry", "don't think she is happy")
# Clause breaks end a negator's reach: "not sad but angry" states anger.
BREAKS = frozenset({"but", "yet", "though", "although", "however", "instead", "rather"})
TOKEN = re.compile(r"[a-z]+(?:'[a-z]+)?|[.;:!?,]")


def _candidates(token: str) -> list[str]:
    """The token and its plausible base forms: -ly adverbs, -ily -> -y, -ness nouns."""
    forms = [token]
    if token.endswith("ily"):
        forms.append(token[:-3] + "y")
    if token.endswith("ly"):
        forms.append(token[:-2])
    if token.endswith("ness"):
        forms.append(token[:-4])
    return forms


def emotion_word(token: str, wheels: Wheels) -> str | None:
    """The vocabulary word a token names, or None."""
    known = set(wheels.vocabulary)
    for form in _candidates(token):
        word = wheels.word(form)
        if word in known and word != "none":
            return word
    return None


def extract(text: str, wheels: Wheels | None = None) -> list[str]:
    """The emotion words a description states, in order of first mention, each once."""
    wheels = wheels or load_wheels()
    found: list[str] = []
    negated_until = -1
    tokens = TOKEN.findall(str(text).lower().replace("’", "'"))
    for i, token in enumerate(tokens):
        if token in NEGATORS or token.endswith("n't"):
            negated_until = i + NEGATION_REACH
            continue
        if token in BREAKS or not token[0].isalpha():
            negated_until = -1
            continue
        word = emotion_word(token, wheels)
        if word and i > negated_until and word not in found:
            found.append(word)
    return found
