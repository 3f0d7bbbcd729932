"""The shipped accelerate configurations load."""
import pytest


@pytest.mark.parametrize("name", ["ddp", "cpu_ddp", "fsdp", "deepspeed_zero2", "deepspeed_zero3"])
def test_accelerate_configs_load(name):
    """Each shipped accelerate config is one accelerate itself reads (multi-GPU runs need the GPUs)."""
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(f"finetune/accelerate/{name}.yaml")
    assert config.num_processes >= 2 and config.distributed_type is not None


def test_top_p_reaches_trls_sampling_and_is_refused_out_of_range(tmp_path):
    """`top_p` reaches TRL's sampling (a tiny model's long tail wrote junk into half the reasoning blocks at
    temperature 1, top_p 1); out of (0, 1] it is refused where the recipe is read."""
    from mllm_mer.config import TrainConfig
    from mllm_mer.training.grpo import grpo_arguments

    recipe = "finetune/configs/tiny_reasoning_grpo.yaml"
    cfg = TrainConfig.from_yaml(recipe, [f"output_dir={tmp_path}", "top_p=0.8"])
    assert cfg.rl.top_p == 0.8
    assert grpo_arguments(cfg, tmp_path, False, []).top_p == 0.8
    with pytest.raises(ValueError, match="top.p must be between"):
        TrainConfig.from_yaml(recipe, ["top_p=1.5"])


def test_the_grpo_report_names_its_sampling_and_reads_each_dev_score_against_the_start(tmp_path):
    from mllm_mer.config import TrainConfig
    from mllm_mer.training.grpo_report import write_report

    cfg = TrainConfig.from_yaml("finetune/configs/tiny_reasoning_grpo.yaml", [f"output_dir={tmp_path}", "top_p=0.8"])
    report = write_report(tmp_path, [], cfg).read_text()
    assert "at temperature 0.5, top_p 0.8, KL coefficient" in report
    assert "the reasoning blocks credited (not the answers)" in report

    def dev(*scores):
        history = [{"step": 8 * i, "eval_accuracy": score} for i, score in enumerate(scores)]
        return write_report(tmp_path, history, cfg).read_text()

    assert ("Dev accuracy: 0.594 before training -> 0.750 at step 16; best 0.969 at step 8 (the adapter kept), "
            "+0.375 over the start.") in dev(0.59375, 0.96875, 0.75)
    assert "no trained step beat the start (0.594); the starting adapter is the better one." in dev(
        0.59375, 0.5, 0.59375)


def test_credit_reasoning_keeps_each_rollouts_block_in_the_loss_and_drops_its_answer():
    """The loss mask (TRL's tool_mask) over right-padded completions: the first `lead` tokens of each row count,
    its answer and padding do not; the attention mask is not touched."""
    import torch

    from mllm_mer.training.grpo_trainer import lead_mask

    completion_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    assert lead_mask(completion_mask, [3, 1]).tolist() == [[1, 1, 1, 0, 0], [1, 0, 0, 0, 0]]
    assert completion_mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    with pytest.raises(RuntimeError, match="2 completions but 1 reasoning leads"):
        lead_mask(completion_mask, [3])


def test_credit_is_an_rl_option_with_two_values(tmp_path):
    from mllm_mer.config import TrainConfig

    recipe = "finetune/configs/tiny_reasoning_grpo.yaml"
    assert TrainConfig.from_yaml(recipe, [f"output_dir={tmp_path}", "credit=reasoning"]).rl.credit == "reasoning"
    with pytest.raises(ValueError, match="credit"):
        TrainConfig.from_yaml(recipe, ["credit=answers"])
