"""Pairwise preference (EmoPrefer / MER-Prefer): a Bradley-Terry ranking of systems from verdicts on
pairs of descriptions, position bias, and agreement with people. Pure functions.

A verdict is (first shown, second shown, winner), the winner one of the two names or None (a tie,
counted half to each). Each pair is judged in both orders so position bias can be measured.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import expit

SEED = 0


@dataclass(frozen=True)
class Verdict:
    first: str  # the system whose description was shown first
    second: str
    winner: str | None  # None: a tie


def win_matrix(verdicts: Sequence[Verdict], systems: Sequence[str]) -> np.ndarray:
    """wins[i, j]: how often system i beat system j (ties count half each way)."""
    index = {s: k for k, s in enumerate(systems)}
    wins = np.zeros((len(systems), len(systems)))
    for v in verdicts:
        a, b = index[v.first], index[v.second]
        if v.winner is None:
            wins[a, b] += 0.5
            wins[b, a] += 0.5
        else:
            winner, loser = (a, b) if v.winner == v.first else (b, a)
            wins[winner, loser] += 1
    return wins


def bradley_terry(wins: np.ndarray, prior: float | None = None) -> np.ndarray:
    """Log-strengths (mean 0) maximising the Bradley-Terry likelihood of `wins`. A tiny ridge `prior`
    keeps a system that never lost (or never won) finite; without one, the fit is the exact maximum.
    Damped Newton steps: a few milliseconds a fit, so a bootstrap of a thousand fits stays quick."""
    k = wins.shape[0]
    if prior is None:
        prior = 0.0 if np.all(wins.sum(axis=1) > 0) and np.all(wins.sum(axis=0) > 0) else 1e-3
    games, won = wins + wins.T, wins.sum(axis=1)

    def loss(theta: np.ndarray) -> float:
        diff = theta[:, None] - theta[None, :]
        return float(np.sum(wins * np.logaddexp(0, -diff))) + prior * float(theta @ theta)

    theta = np.zeros(k)
    for _ in range(200):
        p = expit(theta[:, None] - theta[None, :])  # P(i beats j)
        grad = (games * p).sum(axis=1) - won + 2 * prior * theta
        weight = games * p * (1 - p)
        hessian = np.diag(weight.sum(axis=1)) - weight + 2 * prior * np.eye(k)
        step = np.linalg.solve(hessian + np.ones((k, k)) / k, grad)  # the shift of all strengths is free
        size, before = 1.0, loss(theta)
        while loss(theta - size * step) > before + 1e-15 and size > 1e-8:
            size /= 2
        theta = theta - size * step
        if np.max(np.abs(size * step)) < 1e-12:
            break
    return theta - theta.mean()


def ranking(verdicts: Sequence[Verdict], systems: Sequence[str], n_resamples: int = 1000,
            level: float = 0.95) -> dict[str, dict[str, float]]:
    """Per system: Bradley-Terry log-strength with a bootstrap interval over verdicts, and its wins."""
    theta = bradley_terry(win_matrix(verdicts, systems))
    rng = np.random.default_rng(SEED)
    draws = np.array([bradley_terry(win_matrix([verdicts[i] for i in rng.integers(0, len(verdicts), len(verdicts))],
                                               systems)) for _ in range(n_resamples)]) if verdicts else None
    low, high = (1 - level) / 2, (1 + level) / 2
    wins = win_matrix(verdicts, systems)
    table = {}
    for k, name in enumerate(systems):
        table[name] = {"strength": float(theta[k]), "wins": float(wins[k].sum()), "losses": float(wins[:, k].sum())}
        if draws is not None:
            table[name]["interval"] = [float(np.quantile(draws[:, k], low)), float(np.quantile(draws[:, k], high))]
    return dict(sorted(table.items(), key=lambda item: -item[1]["strength"]))


def position_bias(verdicts: Sequence[Verdict]) -> float:
    """Share of decisive verdicts that chose the description shown first (0.5: no bias)."""
    decisive = [v for v in verdicts if v.winner is not None]
    return float(np.mean([v.winner == v.first for v in decisive])) if decisive else float("nan")


def agreement(judge: Sequence[str | None], people: Sequence[str | None]) -> float:
    """Share of pairs where the judge picked what people picked (ties must match ties)."""
    if len(judge) != len(people) or not judge:
        raise ValueError("judge and human verdicts must be non-empty and of the same length")
    return float(np.mean([a == b for a, b in zip(judge, people, strict=True)]))
