"""The shipped accelerate configurations load."""
import pytest


@pytest.mark.parametrize("name", ["ddp", "cpu_ddp", "fsdp", "deepspeed_zero2", "deepspeed_zero3"])
def test_accelerate_configs_load(name):
    """Each shipped accelerate config is one accelerate itself reads (multi-GPU runs need the GPUs)."""
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(f"finetune/accelerate/{name}.yaml")
    assert config.num_processes >= 2 and config.distributed_type is not None


def test_the_reasoning_grpo_recipe_samples_its_rollouts_from_the_nucleus(tmp_path):
    """`top_p` reaches TRL's sampling (a tiny model's long tail wrote junk into half the reasoning blocks at
    top_p 1, whose coin-flip rewards drove the policy); out of (0, 1] it is refused where the recipe is read."""
    from mllm_mer.config import TrainConfig
    from mllm_mer.training.grpo import grpo_arguments

    recipe = "finetune/configs/tiny_reasoning_grpo.yaml"
    cfg = TrainConfig.from_yaml(recipe, [f"output_dir={tmp_path}"])
    assert cfg.rl.top_p == 0.8
    assert grpo_arguments(cfg, tmp_path, False, []).top_p == 0.8
    with pytest.raises(ValueError, match="top.p must be between"):
        TrainConfig.from_yaml(recipe, ["top_p=1.5"])


def test_the_grpo_report_names_the_nucleus_it_sampled_from(tmp_path):
    from mllm_mer.config import TrainConfig
    from mllm_mer.training.grpo_report import write_report

    cfg = TrainConfig.from_yaml("finetune/configs/tiny_reasoning_grpo.yaml", [f"output_dir={tmp_path}"])
    report = write_report(tmp_path, [], cfg).read_text()
    assert "at temperature 1.0, top_p 0.8, KL coefficient" in report
