"""The pipeline: the stages composed under a run's strategy, for a batch (`answer`), a stream of many
samples (`stream`) and dialogues in lockstep (`dialogue`); `build` turns a verb's config into a run (through
`resolve` and `resources`) and opens its backend."""
from mllm_mer.pipeline.answer import Answered, answer, answer_prepared, answer_run, predict, run_context
from mllm_mer.pipeline.stream import answer_stream, streams_answers
from mllm_mer.stages.prepare import Prepared, prepare
from mllm_mer.stages.scoring import add_probabilities, run_prompts, score_labels

__all__ = ["Answered", "Prepared", "add_probabilities", "answer", "answer_prepared", "answer_run", "answer_stream",
           "predict", "prepare", "run_context", "run_prompts", "score_labels", "streams_answers"]
