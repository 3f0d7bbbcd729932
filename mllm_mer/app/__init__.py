"""mllm-mer in the browser: analyse a clip, chat about it, run a split over a manifest.

    mllm-mer app --model runs/tiny-model --backend vllm      (or: python app.py ...)

Options are the generated ones of `mllm-mer app --help` (or `--config app.yaml`). Gradio is
imported only when the app starts, so `--help` is instant and loads no model.
"""
from __future__ import annotations

from mllm_mer.config import AppConfig


def serve_app(config: AppConfig) -> None:
    """Build the UI, start the engine (minutes for a real model, not per request), serve until stopped."""
    from mllm_mer.app.service import Service
    from mllm_mer.app.ui import build_demo, launch

    service = Service(config)
    demo = build_demo(service)
    try:
        if config.model.backend == "vllm":
            service.backend  # noqa: B018 (starts the engine before the first request)
        launch(demo, service)
    finally:  # SIGINT/SIGTERM end here too: the engine's processes stop with the app
        demo.close()
        service.close()


def main(argv: list[str] | None = None) -> int:
    """`python app.py [options]`: the same as `mllm-mer app [options]`."""
    import sys

    from mllm_mer.cli import main as cli_main

    return cli_main(["app", *(sys.argv[1:] if argv is None else argv)])
