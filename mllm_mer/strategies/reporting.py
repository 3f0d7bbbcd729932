"""A run's report, strategy by strategy: each registered strategy (core.registry.STRATEGIES, and the wrappers in
STRATEGY_WRAPPERS) reports the extras it added to the answers; nothing here names one."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mllm_mer.core import registry
from mllm_mer.core.registry import load_entry
from mllm_mer.core.types import extras_of


def _registered() -> dict[str, str]:
    # Read at each call: a strategy registered at run time (a plugin, a test) reports like a bundled one.
    return {**registry.STRATEGIES, **registry.STRATEGY_WRAPPERS}


def strategy_statistics(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Strategy name -> its metrics.json entry, for each strategy whose extras the records carry."""
    present = {name for record in records for name in extras_of(record.get("prediction") or {})}
    found = {}
    for name, entry in _registered().items():
        if name in present and (stats := load_entry(entry).statistics(records)):
            found[name] = stats
    return found


def _reported(metrics: dict[str, Any]):
    for name, entry in _registered().items():
        if isinstance(metrics.get(name), dict) and metrics[name]:
            yield load_entry(entry), metrics[name]


def strategy_sections(metrics: dict[str, Any]) -> list[str]:
    """The report.md lines each strategy writes from its metrics entry."""
    return [line for strategy, stats in _reported(metrics) for line in strategy.report_section(stats)]


def strategy_summary(metrics: dict[str, Any]) -> list[str]:
    """The summary lines each strategy adds."""
    return [line for strategy, stats in _reported(metrics) for line in strategy.summary_lines(stats)]
