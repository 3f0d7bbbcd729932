"""What a run's template and strategy may read, assembled once per run: the demonstration index and
the dialogue history (stages.resources.Resources), for what the run needs (`Run.needs`)."""
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

log = logging.getLogger(__name__)


def build_resources(setup: PromptSetup, needs: frozenset[str], retrieval: RetrievalConfig,
                    dataset: str | None = None, data_dir: str | None = None, split: str | None = None,
                    samples: Sequence[Sample] = (), loader_options: dict[str, Any] | None = None) -> Resources:
    """The resources of a run over `samples` (of `dataset`/`split`, when they come from one).

    The index is built only when something reads it (`needs`: the prompt's and the strategy's): the
    `retrieved` template (which then requires it) or the agent's `recall` tool (which is left out, with a
    warning, without it)."""
    source = split_source(dataset, data_dir, split) if dataset and data_dir else None
    history = dialogue_history(list(samples)) if "history" in needs else {}
    index_dataset = retrieval.retrieve_dataset or dataset
    index_dir = retrieval.retrieve_data_dir or data_dir
    index = None
    if "index" in needs and index_dataset and index_dir and retrieval.retrieve_split:
        same_data = index_dataset == dataset and index_dir == data_dir
        try:
            index = index_for(index_dataset, index_dir, retrieval.retrieve_split, retrieval.retrieve_embedder,
                              **(loader_options or {} if same_data else {}))
        except (DatasetError, ValueError) as error:
            if needs_demonstrations(setup.template):
                raise
            log.warning("the recall tool is off: %s", error)
    elif needs_demonstrations(setup.template):
        raise ValueError(f"template {setup.template!r} shows retrieved demonstrations: name a labelled split "
                         "with --retrieve-dataset, --retrieve-data-dir and --retrieve-split")
    return Resources(index=index, source=source, history=history)
