"""How the model reaches its answer: strategies registered by name (core.registry.STRATEGIES).

    strategy = build_strategy(cfg.strategy, setup.scheme, setup.mode)
    strategy.answer(backend, prepared, RunContext(setup, strategy, adapter=...))
"""
from __future__ import annotations

from mllm_mer.core.registry import STRATEGIES, STRATEGY_WRAPPERS, load_entry
from mllm_mer.core.types import LabelScheme
from mllm_mer.strategies.base import BaseStrategy, Draws, RunContext, Strategy, single, strategy_class

__all__ = ["STRATEGIES", "BaseStrategy", "Draws", "RunContext", "Strategy", "build_strategy", "single",
           "strategy_class"]


def build_strategy(config, scheme: LabelScheme, mode: str) -> Strategy:
    """The strategy a StrategyConfig names, with its own options; wrapped by self-consistency when
    `samples` > 1. A combination that cannot work is a ValueError with the reason."""
    if config.strategy not in STRATEGIES:
        raise ValueError(f"--strategy must be one of {', '.join(STRATEGIES)}, not {config.strategy!r}")
    strategy = strategy_class(config.strategy).from_config(config, scheme)
    if config.samples > 1:  # the wrapper is registered as data beside the strategies, loaded when used
        strategy = load_entry(STRATEGY_WRAPPERS["consistency"])(strategy, config.samples, config.temperature)
    strategy.check(mode)
    return strategy
