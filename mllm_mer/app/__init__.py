"""mllm-mer in the browser: analyse a clip, chat about it, run a split over a manifest.

    mllm-mer app --model runs/tiny-model --backend vllm      (or: python app.py ...)

Options are the generated ones of `mllm-mer app --help` (or `--config app.yaml`). Gradio is
imported only when the app starts, so `--help` is instant and loads no model.
"""
from __future__ import annotations

import sys

from mllm_mer.config import AppConfig


def serve_app(config: AppConfig) -> None:
    """Build the UI, start the engine (minutes for a real model, not per request), serve until stopped."""
    from mllm_mer.app.service import Service
    from mllm_mer.app.ui import build_demo, launch

    service = Service(config)
    demo = build_demo(service)
    try:
        # The page is up at once and says "loading"; requests wait until the model is ready.
        launch(demo, service, prevent_thread_lock=True)
        print(f"mllm-mer app at http://{config.ui.host}:{demo.server_port} (model loading)", file=sys.stderr,
              flush=True)
        service.load()  # in the main thread: engines install signal handlers
        print(f"model {service.status}", file=sys.stderr, flush=True)
        demo.block_thread()
    finally:  # SIGINT/SIGTERM end here too: the engine's processes stop with the app
        demo.close()
        service.close()

