"""Settings chosen so that third-party lines stay off our paths: the Qwen3 video setting on every backend,
vLLM quiet unless asked, no share-link hint from the app."""


def test_the_qwen3_video_setting_reaches_every_backend(monkeypatch):
    from mllm_mer.config import ServeConfig, build
    from mllm_mer.core.families import FAMILIES
    from mllm_mer.serving.vllm_server import server_command

    chosen = dict(FAMILIES["qwen3_vl"].video_processor_kwargs)
    assert chosen == {"cap_pixels_per_frame": False}
    cmd = server_command(build(ServeConfig, model="Qwen/Qwen3-VL-2B-Instruct", dtype="float32"))
    assert cmd[cmd.index("--mm-processor-kwargs") + 1] == '{"cap_pixels_per_frame": false}'
    other = server_command(build(ServeConfig, model="Qwen/Qwen2.5-VL-3B-Instruct", dtype="float32"))
    assert "--mm-processor-kwargs" not in other


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
