"""One place builds a run: a verb's config -> its prompt, strategy, resources, run context and backend.

Every verb, the app, training, the Ray actors and the benchmarks build their runs here, so a new
part of a run (a resource, a check, an adapter rule) is added once:

    run = build_run(cfg, samples=samples)
    with open_backend(cfg.backend) as backend:   # closed on exit, whatever happens
        answered = answer_run(backend, samples, run.context)
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from mllm_mer.backends import load_backend
from mllm_mer.backends.base import Backend
from mllm_mer.config import BackendConfig, InferenceConfig, ModelConfig, PromptedConfig, RetrievalConfig
from mllm_mer.core.types import PromptSetup, Sample
from mllm_mer.pipeline.resolve import resolve_prompt, resolve_strategy
from mllm_mer.pipeline.resources import build_resources
from mllm_mer.stages.prepare import Stage, quiet
from mllm_mer.stages.resources import Resources
from mllm_mer.strategies import RunContext, Strategy


@dataclass(frozen=True)
class Source:
    """Where a run's samples come from (a benchmark split), for the demonstration index and dialogue history."""

    dataset: str | None = None
    data_dir: str | None = None
    split: str | None = None
    loader_options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Run:
    """Everything a run needs beside its backend: the resolved prompt, the strategy, the run context
    (adapter, probabilities, progress, resources), and what it reads beyond its samples."""

    setup: PromptSetup
    strategy: Strategy
    context: RunContext
    retrieval: RetrievalConfig
    needs: frozenset[str] = frozenset()  # "index", "history": its prompt's needs and its strategy's

    def add_resources(self, samples: Sequence[Sample] = (), source: Source | None = None) -> Resources:
        """Build what the template and strategy read over `samples` (the index only when something reads it)."""
        self.context.resources = _resources(self.setup, self.needs, self.retrieval, samples, source)
        return self.context.resources

    def for_adapter(self, adapter: str | None, on_stage: Stage = quiet) -> RunContext:
        """The run context with another adapter (and progress callback): the app's per-request choice."""
        return replace(self.context, adapter=adapter, on_stage=on_stage)


def chosen_adapter(model: ModelConfig) -> str | None:
    """The adapter a run's requests use: the first one given (the others stay loaded for the app to offer)."""
    return next(iter(model.adapters), None)


def prompt_setup(cfg: PromptedConfig, default_labels: str | None = None,
                 default_template: str = "zero_shot") -> PromptSetup:
    """The run's prompt from a verb's config (and an adapter's saved prompt); for verbs that only prompt."""
    inference = isinstance(cfg, InferenceConfig)
    return resolve_prompt(cfg.model, cfg.prompt, cfg.media, default_labels=default_labels,
                          default_template=default_template, retrieval=cfg.retrieval if inference else None,
                          client=cfg.client if inference else None)


def run_resources(setup: PromptSetup, strategy: Strategy | None, retrieval: RetrievalConfig,
                  samples: Sequence[Sample] = (), source: Source | None = None) -> Resources:
    """The resources of a run over `samples` (training builds its agent's here too)."""
    return _resources(setup, setup.needs | (strategy.needs() if strategy else frozenset()), retrieval, samples,
                      source)


def _resources(setup: PromptSetup, needs: frozenset[str], retrieval: RetrievalConfig, samples: Sequence[Sample],
               source: Source | None) -> Resources:
    source = source or Source()
    return build_resources(setup, needs, retrieval, source.dataset, source.data_dir, source.split, samples,
                           source.loader_options)


def build_run(cfg: InferenceConfig, *, samples: Sequence[Sample] = (), source: Source | None = None,
              default_labels: str | None = None, probabilities: bool = True, media_roots: Sequence[str] = (),
              with_resources: bool = True, on_stage: Stage = quiet, setup: PromptSetup | None = None,
              strategy: Strategy | None = None) -> Run:
    """A verb's run: prompt, strategy (a combination that cannot work: ValueError), resources over `samples`
    (unless `with_resources` is off: `Run.add_resources` later), and the run context.

    `probabilities`: generate mode also scores label probabilities (score mode always does);
    `media_roots`: media must lie inside these folders; `setup`/`strategy`: already resolved (training)."""
    setup = setup or prompt_setup(cfg, default_labels)
    if media_roots:
        setup = replace(setup, media=replace(setup.media, allowed_roots=tuple(media_roots)))
    strategy = strategy or resolve_strategy(cfg.strategy, setup)
    context = RunContext(setup, strategy, chosen_adapter(cfg.model), probabilities or setup.mode == "score",
                         on_stage)
    run = Run(setup, strategy, context, cfg.retrieval, setup.needs | strategy.needs())
    if with_resources:
        run.add_resources(samples, source)
    return run


def open_backend(config: BackendConfig) -> Backend:
    """The backend a config names, loaded now; use it as a context manager (`with open_backend(c) as b:`)
    so that it is closed on exit, or call `close()` when it lives as long as its holder (the app, an actor)."""
    return load_backend(config)
