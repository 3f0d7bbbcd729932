"""What a run reports of the agent: tool use over the traces it kept in each answer (`extras["agent"]`)."""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from mllm_mer.core.types import extras_of


def trace_statistics(records: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Calls per tool, steps per sample, and answers given without a tool, over the run's traces."""
    traces = [t for r in records if (t := (extras_of(r["prediction"]).get("agent") or {}).get("trace"))]
    if not traces:
        return None
    calls = Counter(step["tool"] for trace in traces for step in trace if step.get("tool"))
    steps = [len(trace) for trace in traces]
    return {"samples_with_trace": len(traces), "calls_per_tool": dict(calls), "mean_steps": sum(steps) / len(steps),
            "steps_histogram": dict(sorted(Counter(steps).items())),
            "answered_without_tools": sum(len(t) == 1 for t in traces)}


def trace_section(stats: dict[str, Any]) -> list[str]:
    lines = ["", f"{stats['samples_with_trace']} samples with a trace; mean steps {stats['mean_steps']:.2f}; "
                 f"answered without a tool: {stats['answered_without_tools']}", "", "| tool | calls |", "|---|---|"]
    lines += [f"| {tool} | {n} |" for tool, n in sorted(stats["calls_per_tool"].items())]
    lines += ["", "| steps | samples |", "|---|---|"]
    lines += [f"| {steps} | {n} |" for steps, n in stats["steps_histogram"].items()]
    return lines
