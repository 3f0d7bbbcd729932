"""Bundled fine-tuning recipes: installed as `mllm_mer.resources.recipes` (`--config NAME` finds NAME.yaml)."""
