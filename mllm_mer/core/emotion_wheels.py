"""The bundled emotion vocabulary and wheels (prompts/wheels/emotion_wheels.yaml): words -> the inner
sector of each wheel, for open-vocabulary answers. Deterministic tables; docs/scoring.md names the sources."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from mllm_mer.core.paths import PROMPTS_DIR
from mllm_mer.core.yaml_file import read_yaml

WHEELS_FILE = PROMPTS_DIR / "wheels" / "emotion_wheels.yaml"
BASIC_WHEEL = "ekman"  # the wheel of basic labels the hit rate uses


@dataclass(frozen=True)
class Wheels:
    vocabulary: tuple[str, ...]  # the words an open answer may use
    synonyms: dict[str, str]  # other word forms -> a vocabulary word
    sectors: dict[str, dict[str, str]]  # wheel -> vocabulary word -> inner sector

    def word(self, text: str) -> str:
        """A word normalised: case and whitespace folded, punctuation stripped, synonyms mapped."""
        key = " ".join(str(text).strip().strip(".,;:!?\"'").lower().split())
        return self.synonyms.get(key, key)

    def sector(self, wheel: str, text: str) -> str:
        """The word's inner sector on `wheel`; a word outside the vocabulary stays itself (so it can
        only match the same word)."""
        word = self.word(text)
        return self.sectors[wheel].get(word, word)


@cache
def load_wheels() -> Wheels:
    data = read_yaml(WHEELS_FILE)
    names = list(data["sectors"])
    table = data["wheels"]
    sectors: dict[str, dict[str, str]] = {name: {} for name in names}
    for word, row in table.items():
        if len(row) != len(names):
            raise ValueError(f"{WHEELS_FILE}: {word!r} needs one sector per wheel ({', '.join(names)})")
        for name, sector in zip(names, row, strict=True):
            if sector not in data["sectors"][name]:
                raise ValueError(f"{WHEELS_FILE}: {word!r} -> {sector!r} is not a sector of {name}")
            sectors[name][str(word)] = str(sector)
    synonyms = {str(k): str(v) for k, v in data["synonyms"].items()}
    unknown = sorted(set(synonyms.values()) - set(table))
    if unknown:
        raise ValueError(f"{WHEELS_FILE}: synonyms point to words outside the vocabulary: {unknown}")
    return Wheels(vocabulary=tuple(str(w) for w in table), synonyms=synonyms, sectors=sectors)
