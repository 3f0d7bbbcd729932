"""Fine-tune from a recipe: `python finetune/train.py --config finetune/configs/X.yaml [key=value ...]`.

The same as `mllm-mer finetune`; under `accelerate launch` it runs on several GPUs
(see finetune/accelerate/). All logic lives in mllm_mer.training.sft.
"""
import sys

from mllm_mer.cli import main

if __name__ == "__main__":
    sys.exit(main(["finetune", *sys.argv[1:]]))
