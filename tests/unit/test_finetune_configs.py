"""The shipped accelerate configurations load."""
import pytest


@pytest.mark.parametrize("name", ["ddp", "cpu_ddp", "fsdp", "deepspeed_zero2", "deepspeed_zero3"])
def test_accelerate_configs_load(name):
    """Each shipped accelerate config is one accelerate itself reads (multi-GPU runs need the GPUs)."""
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(f"finetune/accelerate/{name}.yaml")
    assert config.num_processes >= 2 and config.distributed_type is not None
