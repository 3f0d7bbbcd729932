"""Bundled fine-tuning recipes (configs/) and `accelerate launch` configs (accelerate/): installed as
`mllm_mer.resources.finetune`. The folders inside carry no `__init__.py`, so running `finetune/train.py` can never
shadow the `accelerate` package with the folder of that name."""
