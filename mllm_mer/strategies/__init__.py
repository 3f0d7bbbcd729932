"""How the model reaches its answer: strategies registered by name (core.registry.STRATEGIES).

    strategy = build_strategy(cfg.strategy, setup.scheme, setup.mode)
    strategy.answer(backend, prepared, RunContext(setup, strategy, adapter=...))
"""
from __future__ import annotations

from mllm_mer.core.registry import STRATEGIES
from mllm_mer.core.types import LabelScheme
from mllm_mer.strategies.base import BaseStrategy, Draws, RunContext, Strategy, single, strategy_class
from mllm_mer.strategies.consistency import SelfConsistency

__all__ = ["STRATEGIES", "BaseStrategy", "Draws", "RunContext", "SelfConsistency", "Strategy", "build_strategy",
           "single", "strategy_class"]


def build_strategy(config, scheme: LabelScheme, mode: str) -> Strategy:
    """The strategy a StrategyConfig names, with its own options; wrapped by self-consistency when
    `samples` > 1. A combination that cannot work is a ValueError with the reason."""
    if config.strategy not in STRATEGIES:
        raise ValueError(f"--strategy must be one of {', '.join(STRATEGIES)}, not {config.strategy!r}")
    strategy = strategy_class(config.strategy).from_config(config, scheme)
    if config.samples > 1:
        strategy = SelfConsistency(strategy, config.samples, config.temperature)
    strategy.check(mode)
    return strategy
