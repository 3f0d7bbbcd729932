"""The emotion reasoning agent: tools that gather evidence (`tools`), the lockstep loop (`loop`), and
the strategy over them (`strategy.Agent`)."""
from mllm_mer.strategies.agent.loop import ANSWER_LEAD, action_schema, run_episodes, start
from mllm_mer.strategies.agent.strategy import Agent
from mllm_mer.strategies.agent.tools import TOOL_NAMES, Episode, Toolbox

__all__ = ["ANSWER_LEAD", "TOOL_NAMES", "Agent", "Episode", "Toolbox", "action_schema", "run_episodes", "start"]
