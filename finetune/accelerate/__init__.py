"""Bundled `accelerate launch` configs: installed as `mllm_mer.resources.accelerate`."""
