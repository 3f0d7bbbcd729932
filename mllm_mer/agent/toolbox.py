"""What a run's tools may read, assembled once per run: the demonstration index and the dialogue history."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from mllm_mer.agent.tools import Toolbox, dialogue_history
from mllm_mer.config import RetrievalConfig
from mllm_mer.types import PromptSetup, Sample

log = logging.getLogger(__name__)


def build_toolbox(setup: PromptSetup, retrieval: RetrievalConfig, dataset: str | None = None,
                  data_dir: str | None = None, split: str | None = None, samples: Sequence[Sample] = (),
                  loader_options: dict[str, Any] | None = None) -> Toolbox:
    """The toolbox of a run over `samples` (of `dataset`/`split`, when they come from one).

    The index is built only when something reads it: the `retrieved` template (which then
    requires it) or the agent's `recall` tool (which is left out, with a warning, without it)."""
    from mllm_mer.datasets import DatasetError
    from mllm_mer.prompting import needs_demonstrations
    from mllm_mer.retrieval import index_for, split_source

    required = needs_demonstrations(setup.template)
    wanted = required or (setup.strategy == "agent" and "recall" in setup.tools)
    index_dataset = retrieval.retrieve_dataset or dataset
    index_dir = retrieval.retrieve_data_dir or data_dir
    index = None
    if wanted and index_dataset and index_dir and retrieval.retrieve_split:
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
    history = dialogue_history(list(samples)) if setup.strategy == "agent" else {}
    return Toolbox(setup=setup, index=index, source=source, history=history)
