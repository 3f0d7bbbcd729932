"""Bundled label sets, templates, wheels, rewards and agent tools: installed as `mllm_mer.resources.prompts`."""
