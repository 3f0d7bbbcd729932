"""Constrained label scoring over a token trie (pure logic; readings are made up here)."""
import math

import pytest

from mllm_mer.backends.label_scoring import (
    branch_points,
    constrained_logprobs,
    reading_paths,
    readings_from_token_logprobs,
)

# Shaped like the MELD emotion labels after '{"emotion":"' (token 7): one-token labels,
# two labels sharing a first token ('s' -> 'ad'/'ur'), each ending in a quote (token 0).
NEUTRAL, JOY, SADNESS, SURPRISE = [7, 1, 0], [7, 2, 0], [7, 3, 4, 5, 0], [7, 3, 6, 0]
LABELS = [NEUTRAL, JOY, SADNESS, SURPRISE]


def test_branch_points_are_where_candidates_diverge():
    assert branch_points(LABELS) == {(7,): {1, 2, 3}, (7, 3): {4, 6}}


def test_a_candidate_that_is_a_prefix_of_another_is_refused():
    with pytest.raises(ValueError, match="prefix of another"):
        branch_points([[1, 2], [1, 2, 3]])


def test_probabilities_renormalise_over_allowed_tokens_and_ignore_forced_ones():
    readings = {(7,): {1: math.log(0.2), 2: math.log(0.1), 3: math.log(0.1)},  # 0.6 elsewhere
                (7, 3): {4: math.log(0.3), 6: math.log(0.1)}}
    probs = [math.exp(v) for v in constrained_logprobs(LABELS, readings)]
    assert probs == pytest.approx([0.5, 0.25, 0.25 * 0.75, 0.25 * 0.25])
    assert sum(probs) == pytest.approx(1.0)


def test_a_single_candidate_is_certain():
    assert constrained_logprobs([[5, 6, 0]], {}) == [0.0]


def test_readings_from_whole_sequence_logprobs_match_branch_readings():
    per_token = [[-0.1, -1.0, -0.5], [-0.1, -2.0, -0.5], [-0.1, -1.5, -0.7, -3.0, -0.2], [-0.1, -1.5, -0.9, -0.3]]
    readings = readings_from_token_logprobs(LABELS, per_token)
    assert readings[(7,)] == {1: -1.0, 2: -2.0, 3: -1.5}
    assert readings[(7, 3)] == {4: -0.7, 6: -0.9}
    # Tokens after the last branch point (here the quotes, 'ness') do not change the answer.
    changed = [row[:-1] + [row[-1] - 5.0] for row in per_token]
    assert constrained_logprobs(LABELS, readings) == pytest.approx(
        constrained_logprobs(LABELS, readings_from_token_logprobs(LABELS, changed)))


def test_one_forced_walk_reads_nested_branch_points():
    [walk] = reading_paths(LABELS)
    assert walk.start == 1 and walk.reads == (1, 2)
    assert walk.path[:2] == (7, 3) and walk.path == tuple(LABELS[walk.candidate])
    assert set(walk.tokens) == {1, 2, 3, 4, 6}


def test_separate_subtrees_need_one_walk_each_and_every_branch_is_read_once():
    labels = [[1, 2, 0], [1, 3, 0], [4, 5, 0], [4, 6, 0]]
    walks = reading_paths(labels)
    read = [walk.path[:depth] for walk in walks for depth in walk.reads]
    assert sorted(read) == sorted(branch_points(labels)) and len(read) == len(set(read))
    assert len(walks) == 2
