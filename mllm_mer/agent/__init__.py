"""The emotion reasoning agent: tools that gather evidence (`tools`) and the lockstep loop (`loop`)."""
from mllm_mer.agent.loop import ANSWER_LEAD, action_schema, run_episodes, start
from mllm_mer.agent.tools import TOOL_NAMES, Episode, Toolbox, dialogue_history

__all__ = ["ANSWER_LEAD", "TOOL_NAMES", "Episode", "Toolbox", "action_schema", "dialogue_history", "run_episodes",
           "start"]
