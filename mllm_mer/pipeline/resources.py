"""What a run's template and strategy may read, assembled once per run: the demonstration index and
the dialogue history (stages.resources.Resources)."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from mllm_mer.config import RetrievalConfig
from mllm_mer.conversation.context import dialogue_history
from mllm_mer.core.types import PromptSetup, Sample
from mllm_mer.datasets import DatasetError
from mllm_mer.prompting import needs_demonstrations
from mllm_mer.stages.resources import Resources
from mllm_mer.stages.retrieval import index_for, split_source
from mllm_mer.strategies import Strategy

log = logging.getLogger(__name__)


def needed(setup: PromptSetup, strategy: Strategy | None) -> frozenset[str]:
    """What the run reads beyond its samples: the template's demonstrations and the strategy's needs."""
    found = set(strategy.needs()) if strategy is not None else set()
    if needs_demonstrations(setup.template):
        found.add("index")
    return frozenset(found)


def build_resources(setup: PromptSetup, strategy: Strategy | None, retrieval: RetrievalConfig,
                    dataset: str | None = None, data_dir: str | None = None, split: str | None = None,
                    samples: Sequence[Sample] = (), loader_options: dict[str, Any] | None = None) -> Resources:
    """The resources of a run over `samples` (of `dataset`/`split`, when they come from one).

    The index is built only when something reads it: the `retrieved` template (which then
    requires it) or the agent's `recall` tool (which is left out, with a warning, without it)."""
    required = needs_demonstrations(setup.template)
    needs = needed(setup, strategy)
    index_dataset = retrieval.retrieve_dataset or dataset
    index_dir = retrieval.retrieve_data_dir or data_dir
    index = None
    if "index" in needs and index_dataset and index_dir and retrieval.retrieve_split:
        same_data = index_dataset == dataset and index_dir == data_dir
        try:
            index = index_for(index_dataset, index_dir, retrieval.retrieve_split, retrieval.retrieve_embedder,
                              **(loader_options or {} if same_data else {}))
        except (DatasetError, ValueError) as error:
            if required:
                raise
            log.warning("the recall tool is off: %s", error)
    elif required:
        raise ValueError(f"template {setup.template!r} shows retrieved demonstrations: name a labelled split "
                         "with --retrieve-dataset, --retrieve-data-dir and --retrieve-split")
    source = split_source(dataset, data_dir, split) if dataset and data_dir else None
    history = dialogue_history(list(samples)) if "history" in needs else {}
    return Resources(index=index, source=source, history=history)
