"""Config that checks itself: one error for a bad value, whichever way it came in (flag, YAML, override,
the app's own config, Python), and the nearest option for a mistyped one. No model is loaded: every
error comes before anything is read."""
import math
from dataclasses import replace

import pytest
import yaml

from mllm_mer.cli import main, parse
from mllm_mer.config import (
    ClientConfig,
    ConfigError,
    EvaluateConfig,
    MediaConfig,
    PromptConfig,
    RunConfig,
    StrategyConfig,
    TrainConfig,
    build,
)

NAN, INF = float("nan"), float("inf")

# (section, field, the value as Python holds it, as typed on the command line, the one-line error)
INVALID = [
    (StrategyConfig, "temperature", NAN, "nan", "--temperature must be a finite number, not nan"),
    (StrategyConfig, "temperature", -INF, "-inf", "--temperature must be a finite number, not -inf"),
    (StrategyConfig, "samples", 0, "0", "--samples must be at least 1, not 0"),
    (MediaConfig, "fps", INF, "inf", "--fps must be a finite number, not inf"),
    (MediaConfig, "fps", NAN, "nan", "--fps must be a finite number, not nan"),
    (MediaConfig, "keyframe_snap", NAN, "nan", "--keyframe-snap must be a finite number, not nan"),
    (MediaConfig, "keyframe_snap", 1.5, "1.5", "--keyframe-snap must be between 0.0 and 1.0, not 1.5"),
    (MediaConfig, "media_cache_gb", NAN, "nan", "--media-cache-gb must be a finite number, not nan"),
    (MediaConfig, "face_margin", 3, "3", "--face-margin must be between 0.0 and 2.0, not 3"),
    (ClientConfig, "timeout_s", NAN, "nan", "--timeout-s must be a finite number, not nan"),
    (RunConfig, "limit", 0, "0", "--limit must be at least 1, not 0"),
    (RunConfig, "limit", "ten", "ten", "--limit must be a whole number, not 'ten'"),
    (PromptConfig, "mode", "scores", "scores", "--mode must be one of generate, score, not 'scores'"),
]
IDS = [f"{field}={typed}" for _, field, _, typed, _ in INVALID]


def _cli_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "usage:" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0].removeprefix("mllm-mer evaluate: error: ")


def _as_the_app_makes_it(section: type, field: str, value) -> EvaluateConfig:
    """The app's Batch tab makes its evaluate config from sections, not from flags (app/service.py)."""
    base = build(EvaluateConfig)
    if section is RunConfig:
        return EvaluateConfig(model=base.model, run=RunConfig(out="/tmp/run", **{field: value}))
    if section is PromptConfig:
        return EvaluateConfig(prompt=replace(PromptConfig(), **{field: value}))
    name = {StrategyConfig: "strategy", MediaConfig: "media", ClientConfig: "client"}[section]
    return EvaluateConfig(**{name: replace(getattr(base, name), **{field: value})})


@pytest.mark.parametrize("section, field, value, typed, message", INVALID, ids=IDS)
def test_an_invalid_value_gets_the_same_one_line_error_on_every_path(tmp_path, capsys, section, field, value,
                                                                     typed, message):
    flag = "--" + field.replace("_", "-")
    words = [f"{flag}={typed}"] if typed.startswith("-") else [flag, typed]  # argparse: -inf looks like a flag
    assert _cli_error(capsys, ["evaluate", *words]) == message
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({field: value}))  # YAML's own spelling: .nan, .inf, 3, scores
    assert _cli_error(capsys, ["evaluate", "--config", str(config)]) == message
    assert _cli_error(capsys, ["evaluate", f"{field}={typed}"]) == message  # a key=value override
    with pytest.raises(ConfigError) as app:
        _as_the_app_makes_it(section, field, value)
    assert str(app.value) == message
    with pytest.raises(ConfigError) as python:
        build(EvaluateConfig, **{field: value})
    assert str(python.value) == message


def test_a_section_changed_after_it_was_made_is_checked_again():
    media = MediaConfig(fps=2.0)
    with pytest.raises(ConfigError, match="^--fps must be a finite number, not nan$"):
        replace(media, fps=NAN)


def test_numbers_given_as_text_are_read_as_numbers():
    """YAML reads `1e-4` as text and an override's `nan` too: the value is the number, or the same error."""
    cfg = build(TrainConfig, learning_rate="1e-4", max_steps="12")
    assert cfg.optim.learning_rate == pytest.approx(1e-4) and cfg.optim.max_steps == 12
    assert math.isclose(build(EvaluateConfig, temperature="0.5").strategy.temperature, 0.5)


def test_a_float_option_where_infinity_makes_sense_is_none_of_the_defaults():
    """Every section's defaults pass its own checks (a bad default would refuse every command)."""
    for verb_config in (EvaluateConfig, TrainConfig):
        build(verb_config)


def test_fusion_gate_without_its_file_is_refused_by_the_strategy_section(capsys):
    assert main(["evaluate", "--strategy", "fusion", "--fuser", "gate"]) == 2
    assert capsys.readouterr().err.strip() == ("mllm-mer evaluate: error: --fuser gate needs --fusion fusion.json "
                                               "(from `mllm-mer fit-fusion DEV_RUN`)")


@pytest.mark.parametrize("typed, meant", [("--modle", "--model"), ("--mdoe", "--mode"), ("--mod", "--mode"),
                                          ("--max-frame", "--max-frames"), ("--temprature", "--temperature")])
def test_a_mistyped_flag_suggests_the_one_meant(typed, meant):
    with pytest.raises(ConfigError, match=f"^unknown option '{typed}'; did you mean '{meant}'\\?$"):
        parse(["evaluate", typed, "x"])


def test_a_wrong_choice_lists_the_choices_in_one_line_not_the_usage(capsys):
    assert main(["evaluate", "--mode", "scores"]) == 2
    err = capsys.readouterr().err
    assert err == "mllm-mer evaluate: error: --mode must be one of generate, score, not 'scores'\n"


def test_a_mapping_flag_that_is_not_one_names_the_flag(capsys):
    assert main(["predict", "--engine-args", "[1,2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mllm-mer predict: error: --engine-args must be a YAML/JSON mapping (") and \
        err.count("\n") == 1


def test_the_agent_trained_on_traces_is_the_agents_own_section_with_the_recipes_old_names():
    """The agent's options are declared once; a recipe names them agent_* (max_steps is the optimiser's)."""
    old = build(TrainConfig, agent_steps=5, agent_tools=["look"], agent_look_frames=2, max_steps=40)
    new = build(TrainConfig, agent_max_steps=5, **{"agent.tools": ["look"]}, agent_look_frames=2, max_steps=40)
    assert old == new and old.agent.max_steps == 5 and old.optim.max_steps == 40
    _, cfg, _ = parse(["finetune", "--agent-steps", "4", "--agent-max-steps", "6", "--max-steps", "9"])
    assert (cfg.agent.max_steps, cfg.optim.max_steps) == (6, 9)
    with pytest.raises(ConfigError, match="^--agent-max-steps must be at least 1, not 0$"):
        build(TrainConfig, agent_steps=0)
    _, cfg, _ = parse(["evaluate", "--max-steps", "5"])
    assert cfg.strategy.max_steps == 5  # the same option, where the agent runs


def test_a_section_and_a_same_named_option_are_told_apart_by_their_value():
    """`engine` is the vLLM engine section and the local/ray option: a mapping fills the section."""
    cfg = build(EvaluateConfig, engine="ray", **{"engine.kv_cache_gb": 3})
    assert cfg.scale.engine == "ray" and cfg.engine.kv_cache_gb == 3
    cfg = build(EvaluateConfig, engine={"kv_cache_gb": 4})
    assert cfg.scale.engine == "local" and cfg.engine.kv_cache_gb == 4


@pytest.mark.parametrize("argv, message", [
    (["predict", "--engine-args", "{seed: .nan}"], "--engine-args holds NaN or infinity, which no option takes"),
    (["finetune", "rewards={correct: .inf}"], "--rewards holds NaN or infinity, which no option takes"),
])
def test_a_mapping_option_holding_nan_is_refused_naming_it(argv, message):
    """Mappings pass through to vLLM and into run.json, neither of which has a NaN."""
    with pytest.raises(ConfigError, match=f"^{message}$"):
        parse(argv)


def test_a_training_config_saved_before_the_agent_section_reads_back(tmp_path):
    """A training run saves its config (config.yaml); one saved with the agent's options under `traces`
    still loads, and today's saved config reads back equal."""
    import dataclasses

    saved = dataclasses.asdict(build(TrainConfig))
    del saved["agent"]
    saved["traces"] = {"trace_col": "trace", "agent_steps": 6, "agent_tools": ["look"], "agent_look_frames": 1}
    (tmp_path / "old.yaml").write_text(yaml.safe_dump(saved))
    old = TrainConfig.from_yaml(tmp_path / "old.yaml")
    assert (old.traces.trace_col, old.agent.max_steps, old.agent.tools, old.agent.look_frames) == \
        ("trace", 6, ["look"], 1)
    (tmp_path / "new.yaml").write_text(old.to_yaml())
    assert TrainConfig.from_yaml(tmp_path / "new.yaml") == old
    _, flags, _ = parse(["finetune", "--traces.agent_steps", "4", "--agent-tools", "look"])
    assert (flags.agent.max_steps, flags.agent.tools) == (4, ["look"])


def test_a_positional_choice_names_the_argument_and_its_choices(capsys):
    assert main(["ls", "labelz"]) == 2
    assert capsys.readouterr().err == ("mllm-mer ls: error: WHAT must be one of datasets, labels, templates, models, "
                                       "recipes, not 'labelz'\n")
