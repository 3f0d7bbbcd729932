"""Words a rationale uses only when it perceived a modality (prompts/rewards/modality_words.yaml), as one
case-insensitive pattern per cue modality: GRPO's `grounded` reward and the faithfulness report read them."""
from __future__ import annotations

import re
from functools import cache

from mllm_mer.core.paths import PROMPTS_DIR
from mllm_mer.core.yaml_file import read_yaml

MODALITY_WORDS = PROMPTS_DIR / "rewards" / "modality_words.yaml"


@cache
def modality_patterns() -> dict[str, re.Pattern]:
    """Cue modality (visual, vocal) -> a pattern of its words; a trailing * in the file matches any ending."""
    data = read_yaml(MODALITY_WORDS)
    patterns = {}
    for modality, words in data.items():
        alternatives = [re.escape(w[:-1]) + r"\w*" if w.endswith("*") else re.escape(w) for w in words]
        patterns[modality] = re.compile(r"\b(?:" + "|".join(alternatives) + r")\b", re.IGNORECASE)
    return patterns
