"""The project's bundled data, shipped inside the package.

The files live in the repository's top-level `prompts/` (label sets, templates, judges, wheels, rewards,
agent tools), `finetune/configs/` (recipes) and `finetune/accelerate/` (launch configs); `setup.py` maps
them onto `mllm_mer.resources.prompts` and `.finetune`, so a wheel carries them and an
editable install reads them in place. `mllm_mer.core.paths` finds them through `importlib.resources`.
"""
