"""Per-verb configs: each a dataclass whose fields are sections (`mllm_mer.config.sections`)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from mllm_mer.config.options import (
    CalibrateOptions,
    CompareOptions,
    DemoOptions,
    DialogueOptions,
    DistillOptions,
    InspectOptions,
    JudgeConfig,
    ListOptions,
    MergeOptions,
    ScoreOptions,
    TinyConfig,
)
from mllm_mer.config.sections import (
    AgentConfig,
    ClientConfig,
    DataConfig,
    EngineConfig,
    MediaConfig,
    ModelConfig,
    PredictInput,
    PromptConfig,
    RetrievalConfig,
    RunConfig,
    ScaleConfig,
    ServerConfig,
    StrategyConfig,
    UIConfig,
)
from mllm_mer.config.training import LoraConfig, OptimConfig, RLConfig, TraceConfig
from mllm_mer.config.tree import load_config


@dataclass
class EngineRunConfig:
    """A model on an engine: the base of the backend and of `serve`."""

    model: ModelConfig = field(default_factory=ModelConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)


@dataclass
class BackendConfig(EngineRunConfig):
    """Everything a backend needs to start."""

    client: ClientConfig = field(default_factory=ClientConfig)


@dataclass
class PromptedConfig:
    """A model and what to ask it: the base of every verb that builds prompts."""

    model: ModelConfig = field(default_factory=ModelConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    media: MediaConfig = field(default_factory=MediaConfig)


@dataclass
class InferenceConfig(PromptedConfig):
    """...and a backend to run it on."""

    engine: EngineConfig = field(default_factory=EngineConfig)
    client: ClientConfig = field(default_factory=ClientConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)

    @property
    def backend(self) -> BackendConfig:
        return BackendConfig(self.model, self.engine, self.client)


@dataclass
class TrainConfig(PromptedConfig):
    """A fine-tuning recipe; finetune/configs/*.yaml are this tree (flat keys or sections)."""

    data: DataConfig = field(default_factory=DataConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    traces: TraceConfig = field(default_factory=TraceConfig)
    # The agent trained on traces: the same options as `--strategy agent` runs with, named agent_* here
    # because `max_steps` is already the optimiser's.
    agent: AgentConfig = field(default_factory=AgentConfig, metadata={"prefix": "agent_"})
    rl: RLConfig = field(default_factory=RLConfig)
    # How recipes (and the config.yaml a training run saves) named these before the agent section.
    former_names = {"agent_steps": "agent_max_steps", "traces.agent_steps": "agent_max_steps",
                    "traces.agent_tools": "agent_tools", "traces.agent_look_frames": "agent_look_frames"}

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
        return load_config(cls, path, overrides)

    def to_yaml(self) -> str:
        return yaml.safe_dump(dataclasses.asdict(self), sort_keys=False)


def _verb(name: str, base: type | None = None, **sections: type) -> type:
    """A verb's config: the sections of `base` plus these, in order."""
    return dataclasses.make_dataclass(name, [(n, t, field(default_factory=t)) for n, t in sections.items()],
                                      bases=(base,) if base else (), namespace={"__module__": __name__})


PredictConfig = _verb("PredictConfig", InferenceConfig, input=PredictInput)
EvaluateConfig = _verb("EvaluateConfig", InferenceConfig, data=DataConfig, run=RunConfig, scale=ScaleConfig)
DialogueConfig = _verb("DialogueConfig", InferenceConfig, data=DataConfig, dialogue=DialogueOptions)
AppConfig = _verb("AppConfig", InferenceConfig, ui=UIConfig)
ServeConfig = _verb("ServeConfig", EngineRunConfig, server=ServerConfig)
MergeConfig = _verb("MergeConfig", model=ModelConfig, merge=MergeOptions)
MakeTinyConfig = _verb("MakeTinyConfig", tiny=TinyConfig)
InspectConfig = _verb("InspectConfig", PromptedConfig, data=DataConfig, inspect=InspectOptions)
DemoConfig = _verb("DemoConfig", InferenceConfig, demo=DemoOptions, ui=UIConfig)
CompareConfig = _verb("CompareConfig", compare=CompareOptions, judge=JudgeConfig)
CalibrateConfig = _verb("CalibrateConfig", calibrate=CalibrateOptions)
ListConfig = _verb("ListConfig", list=ListOptions)
ScoreConfig = _verb("ScoreConfig", data=DataConfig, score=ScoreOptions, judge=JudgeConfig)
FitFusionConfig = _verb("FitFusionConfig", fit=CalibrateOptions)
DistillConfig = _verb("DistillConfig", InferenceConfig, data=DataConfig, run=RunConfig, scale=ScaleConfig,
                      distill=DistillOptions)




__all__ = ["AppConfig", "BackendConfig", "CalibrateConfig", "CompareConfig", "DemoConfig", "DialogueConfig",
           "DistillConfig", "EngineRunConfig", "EvaluateConfig", "FitFusionConfig", "InferenceConfig", "InspectConfig",
           "ListConfig", "MakeTinyConfig", "MergeConfig", "PredictConfig", "PromptedConfig", "ScoreConfig",
           "ServeConfig", "TrainConfig"]
