"""The config tree and the generated command line: YAML + overrides per verb, precedence, errors."""
from pathlib import Path

import pytest
import yaml
from helpers import REPO

from mllm_mer.cli import VERBS, parse
from mllm_mer.config import ConfigError, EvaluateConfig, TrainConfig, build, leaf_fields


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_every_verb_has_unique_flat_option_names():
    for verb in VERBS.values():
        leaf_fields(verb.config)  # raises on a name in two sections


def test_evaluate_reads_sections_and_flat_keys_then_overrides_then_flags(tmp_path):
    run = write_yaml(tmp_path / "run.yaml", {"model": {"model": "m1", "dtype": "float32"}, "dataset": "meld",
                                             "data": {"data_dir": "d"}, "split": "test", "limit": 5,
                                             "prompt.template": "label_only"})
    _, cfg, rest = parse(["evaluate", "--config", str(run), "limit=7", "--split", "dev"])
    assert rest == []
    assert (cfg.model.model, cfg.model.dtype, cfg.data.dataset, cfg.data.data_dir) == ("m1", "float32", "meld", "d")
    assert cfg.run.limit == 7 and cfg.run.split == "dev"  # override beats file, flag beats both
    assert cfg.prompt.template == "label_only" and cfg.run.batch_size == 16  # untouched default


def test_serve_yaml_override_and_vllm_passthrough(tmp_path):
    serve = write_yaml(tmp_path / "serve.yaml", {"model": "m", "port": 9001, "adapter": ["a=/x"]})
    _, cfg, rest = parse(["serve", "--config", str(serve), "port=9002", "--swap-space", "4"])
    assert cfg.server.port == 9002 and cfg.model.adapters == {"a": "/x"}
    assert rest == ["--swap-space", "4"]  # unknown flags go to vLLM's server


def test_app_yaml_and_override(tmp_path):
    app = write_yaml(tmp_path / "app.yaml", {"backend": "transformers", "ui": {"port": 7000}, "max_frames": 4})
    _, cfg, _ = parse(["app", "--config", str(app), "ui.port=7001", "--labels", "iemocap4"])
    assert (cfg.model.backend, cfg.ui.port, cfg.media.max_frames, cfg.prompt.labels) == \
        ("transformers", 7001, 4, "iemocap4")


def test_finetune_recipe_and_key_value_overrides():
    _, cfg, _ = parse(["finetune", "--config", "finetune/configs/tiny_lora.yaml", "lora_r=4",
                       "modalities=[text]", "dataset_options={task: emotion}"])
    assert isinstance(cfg, TrainConfig)
    assert cfg.lora.lora_r == 4 and cfg.prompt.modalities == ["text"] and cfg.data.dataset_options == {
        "task": "emotion"}
    assert cfg.optim.epochs == 8 and cfg.media.max_frames == 2  # from the recipe


def test_repeated_and_comma_separated_list_flags():
    _, cfg, _ = parse(["predict", "--adapter", "a=/x", "--adapter", "/y/b", "--modalities", "text,video"])
    assert cfg.model.adapters == {"a": "/x", "b": "/y/b"}
    assert cfg.prompt.modalities == ["text", "video"]


@pytest.mark.parametrize("argv, suggestion", [
    (["evaluate", "--max-new-token", "3"], "--max-new-tokens"),
    (["predict", "max_frame=3"], "max_frames"),
])
def test_unknown_options_name_the_nearest_valid_one(argv, suggestion):
    with pytest.raises(ConfigError, match=f"did you mean '{suggestion}'"):
        parse(argv)


@pytest.mark.parametrize("argv, message", [
    (["predict", "--max-text-chars", "0"], "--max-text-chars must be at least 1, not 0"),
    (["evaluate", "--batch-size", "-2"], "--batch-size must be at least 1, not -2"),
    (["predict", "--max-frames", "0"], "--max-frames must be at least 1, not 0"),
    (["serve", "--gpu-memory-utilization", "1.5"], "--gpu-memory-utilization must be between 0.01 and 1.0, not 1.5"),
    (["finetune", "lora_dropout=1"], "--lora-dropout must be between 0.0 and 0.99, not 1"),
    (["evaluate", "--samples", "0"], "--samples must be at least 1, not 0"),
])
def test_out_of_range_values_are_refused_while_parsing(argv, message):
    """Before any file is read or model loaded: the flags, YAML keys and overrides share one range check."""
    with pytest.raises(ConfigError, match=f"^{message}$"):
        parse(argv)


def test_serve_offers_no_flag_that_does_not_apply_to_it():
    from mllm_mer.cli import build_parser

    parser = build_parser()
    serve = parser._subparsers._group_actions[0].choices["serve"].format_help()  # noqa: SLF001
    predict = parser._subparsers._group_actions[0].choices["predict"].format_help()  # noqa: SLF001
    assert "--backend" not in serve and "--forward-batch-size" not in serve and "--max-lora-rank" in serve
    assert "--backend" in predict and "--forward-batch-size" in predict


def test_unknown_yaml_key_names_the_file_and_the_nearest_key(tmp_path):
    bad = write_yaml(tmp_path / "bad.yaml", {"modalitie": ["text"]})
    with pytest.raises(ConfigError, match=r"bad\.yaml: unknown option 'modalitie'; did you mean 'modalities'"):
        parse(["evaluate", "--config", str(bad)])


def test_secret_from_the_environment_only_when_unset(monkeypatch):
    monkeypatch.setenv("MLLM_MER_API_KEY", "from-env")
    assert parse(["predict"])[1].client.api_key == "from-env"
    assert parse(["predict", "--api-key", "given"])[1].client.api_key == "given"


def test_build_routes_flat_keys_to_sections():
    cfg = build(EvaluateConfig, model="m", split="s", max_frames=3, kv_cache_gb=2)
    assert (cfg.model.model, cfg.run.split, cfg.media.max_frames, cfg.engine.kv_cache_gb) == ("m", "s", 3, 2)
    with pytest.raises(ConfigError, match="did you mean 'max_frames'"):
        build(EvaluateConfig, max_frame=3)


def test_flags_are_declared_only_by_the_generated_parser():
    offenders = [str(p.relative_to(REPO)) for p in (REPO / "mllm_mer").rglob("*.py")
                 if "add_argument(" in p.read_text() and p.relative_to(REPO) != Path("mllm_mer/cli/args.py")]
    offenders += [str(p.relative_to(REPO)) for p in [REPO / "app.py", *(REPO / "benchmarks").glob("*.py")]
                  if "add_argument(" in p.read_text()]
    assert offenders == []


@pytest.mark.parametrize("recipe", sorted(p.name for p in (REPO / "finetune" / "configs").glob("*.yaml")))
def test_every_shipped_recipe_is_a_valid_config(recipe):
    from mllm_mer.config import TrainConfig

    cfg = TrainConfig.from_yaml(REPO / "finetune" / "configs" / recipe)
    assert cfg.optim.output_dir and cfg.data.dataset and cfg.model.model
    if cfg.optim.method == "grpo":
        from mllm_mer.training.grpo_recipe import check_recipe

        check_recipe(cfg)  # group size divides the batch, rewards known


def test_the_reasoning_match_reward_needs_the_column_of_its_reference():
    from mllm_mer.training.grpo_recipe import check_recipe

    recipe = dict(method="grpo", model="m", output_dir="o", dataset="manifest", batch_size=8, num_generations=8,
                  rewards={"correct": 1.0, "reasoning_match": 0.5})
    with pytest.raises(ValueError, match="reasoning_col"):
        check_recipe(build(TrainConfig, **recipe))
    check_recipe(build(TrainConfig, **recipe, reasoning_col="reasoning"))
