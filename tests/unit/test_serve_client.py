"""The OpenAI-compatible client without a server: a down server is a clear error naming its URL."""
import pytest

from mllm_mer.config import BackendConfig, build
from mllm_mer.serving.vllm_server import free_port


def test_down_server_is_a_clear_error_naming_the_url():
    from mllm_mer.backends.openai_client import OpenAIBackend

    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ConnectionError, match=url.replace(".", r"\.")):
        OpenAIBackend(build(BackendConfig, backend="openai", base_url=url, retries=0, timeout_s=5))


def test_the_openai_backend_loads_httpx_before_any_request_thread_runs():
    # The openai package reads sys.modules["httpx"] on every reply; a first import of it on one request thread
    # was seen half-done by another (AttributeError: partially initialized module 'httpx' has no 'Response').
    import sys

    from mllm_mer.backends import openai_client

    assert openai_client.httpx is sys.modules["httpx"]
    assert hasattr(sys.modules["httpx"], "Response")
