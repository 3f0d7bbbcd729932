"""Settings chosen so that third-party lines stay off our paths: the video processor's setting on every backend,
vLLM quiet unless asked, no share-link hint from the app."""
import pytest


@pytest.mark.parametrize("model", ["Qwen/Qwen3-VL-2B-Instruct", "Qwen/Qwen2.5-VL-3B-Instruct",
                                   "Qwen/Qwen2-VL-2B-Instruct", "Qwen/Qwen2.5-Omni-7B"])
def test_the_video_setting_is_chosen_for_every_family_and_reaches_the_server(model):
    from mllm_mer.config import ServeConfig, build
    from mllm_mer.core.families import family_for
    from mllm_mer.serving.vllm_server import server_command

    assert dict(family_for(model).video_processor_kwargs) == {"cap_pixels_per_frame": False}
    cmd = server_command(build(ServeConfig, model=model, dtype="float32"))
    assert cmd[cmd.index("--mm-processor-kwargs") + 1] == '{"cap_pixels_per_frame": false}'


def test_vllm_is_quiet_unless_the_engine_log_is_asked_for(monkeypatch):
    from mllm_mer.backends.vllm_env import apply_log_level

    monkeypatch.delenv("VLLM_LOGGING_LEVEL", raising=False)
    apply_log_level(False)
    import os

    assert os.environ["VLLM_LOGGING_LEVEL"] == "ERROR"
    apply_log_level(True)
    assert os.environ["VLLM_LOGGING_LEVEL"] == "INFO"


def test_the_app_does_not_suggest_a_public_share_link(tmp_path, capfd):
    from mllm_mer.app.service import Service
    from mllm_mer.app.ui import build_demo, launch
    from mllm_mer.config import AppConfig, build
    from mllm_mer.serving.vllm_server import free_port

    service = Service(build(AppConfig, model="unused", runs_dir=str(tmp_path / "runs"), port=free_port()))
    demo = build_demo(service)
    try:
        launch(demo, service, prevent_thread_lock=True)
    finally:
        demo.close()
    said = capfd.readouterr()
    assert "share=True" not in said.out + said.err
