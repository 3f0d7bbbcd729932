"""Label probabilities as a decoder constrained to the label set sees them.

Candidates are token sequences (a label and its closing quote). Put in a trie, they
share a path until they diverge; only at those branch points does the model choose.
A candidate's log-probability is the sum, over the branch points on its path, of its
token's log-probability renormalised over the tokens the candidates allow there.
The result is a distribution over the candidates (it sums to one), and a long label
is not penalised for its extra tokens: after `s|ad` only "sadness" is left, so a model
that would rather close the quote after "sad" does not count against it. It needs the
model's next-token distribution only at branch points, not at every label token.

Backends supply `Readings`: next-token log-probabilities after a given prefix.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

Prefix = tuple[int, ...]
Readings = dict[Prefix, dict[int, float]]  # prefix -> {next token: log-probability}


def branch_points(candidates: Sequence[Sequence[int]]) -> dict[Prefix, set[int]]:
    """Prefixes after which the candidates continue with two or more different tokens."""
    ends = {tuple(c) for c in candidates}
    children: dict[Prefix, set[int]] = {}
    for ids in candidates:
        if not ids:
            raise ValueError("an empty candidate cannot be scored")
        for i in range(len(ids)):
            children.setdefault(tuple(ids[:i]), set()).add(ids[i])
    for end in ends:
        if end in children:
            raise ValueError(f"candidate tokens {list(end)} are a prefix of another candidate's; "
                             "end each candidate with a delimiter (a closing quote)")
    return {prefix: tokens for prefix, tokens in children.items() if len(tokens) > 1}


def constrained_logprobs(candidates: Sequence[Sequence[int]], readings: Readings) -> list[float]:
    """Each candidate's log-probability under decoding constrained to the candidates."""
    branches = branch_points(candidates)
    normalisers = {prefix: _logsumexp([readings[prefix][t] for t in tokens]) for prefix, tokens in branches.items()}
    return [sum(readings[tuple(ids[:i])][ids[i]] - normalisers[tuple(ids[:i])]
                for i in range(len(ids)) if tuple(ids[:i]) in branches)
            for ids in candidates]


def readings_from_token_logprobs(candidates: Sequence[Sequence[int]],
                                 token_logprobs: Sequence[Sequence[float]]) -> Readings:
    """Readings from each candidate's per-token log-probabilities (backends that score whole sequences)."""
    readings: Readings = {}
    for ids, logprobs in zip(candidates, token_logprobs, strict=True):
        for i, (token, logprob) in enumerate(zip(ids, logprobs, strict=False)):
            readings.setdefault(tuple(ids[:i]), {})[token] = logprob
    return readings


@dataclass(frozen=True)
class ReadingPath:
    """One forced walk down a candidate that reads the next-token distribution at branch points.

    The first `start` tokens of `path` are given (prompt side); then the rest is forced
    one token per step, and step j shows the distribution after `path[:start + j]`.
    Steps past the last read are not needed.
    """

    candidate: int  # index of the candidate walked (`path` is its tokens)
    path: tuple[int, ...]
    start: int
    reads: tuple[int, ...]  # depths (prefix lengths) read, ascending, the first == start
    tokens: tuple[int, ...]  # every token whose log-probability is read, across reads


def reading_paths(candidates: Sequence[Sequence[int]]) -> list[ReadingPath]:
    """Fewest forced walks that together read every branch point (one per deepest branch point)."""
    branches = branch_points(candidates)
    deepest = [p for p in branches if not any(len(q) > len(p) and q[:len(p)] == p for q in branches)]
    read: set[Prefix] = set()
    paths = []
    for prefix in sorted(deepest):
        on_path = sorted((p for p in branches if prefix[:len(p)] == p and p not in read), key=len)
        read.update(on_path)
        k = next(k for k, ids in enumerate(candidates) if tuple(ids[:len(prefix)]) == prefix)
        paths.append(ReadingPath(candidate=k, path=tuple(candidates[k]), start=len(on_path[0]),
                                 reads=tuple(len(p) for p in on_path),
                                 tokens=tuple(sorted(set().union(*(branches[p] for p in on_path))))))
    return paths


def _logsumexp(values: Sequence[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))
