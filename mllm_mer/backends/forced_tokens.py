"""A vLLM logits processor that makes a request emit a given token sequence.

Label scoring reads the model's next-token log-probabilities at each point where the
labels diverge. vLLM computes returned log-probabilities from the raw logits, before
logits processors run, so forcing the sampled token leaves them untouched: a request
walks down the label trie as cheap decode steps instead of one prefill per point.
A request opts in through `SamplingParams.extra_args[FORCED_TOKENS]`.
"""
from __future__ import annotations

import torch
from vllm.v1.sample.logits_processor import AdapterLogitsProcessor

FORCED_TOKENS = "mllm_mer_forced_tokens"


class ForcedTokens(AdapterLogitsProcessor):
    def is_argmax_invariant(self) -> bool:
        return False

    def new_req_logits_processor(self, params):
        forced = (params.extra_args or {}).get(FORCED_TOKENS)
        if not forced:
            return None

        def force(output_ids: list[int], logits: torch.Tensor) -> torch.Tensor:
            step = len(output_ids)
            if step < len(forced):
                logits.fill_(float("-inf"))
                logits[forced[step]] = 0.0
            return logits

        return force
