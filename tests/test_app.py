"""The Gradio app on the tiny checkpoint and the session's vLLM engine: API, concurrency, chat, errors, browser."""
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mllm_mer.app.service import Service
from mllm_mer.config import AppConfig, build
from mllm_mer.media.synth import write_clip
from mllm_mer.vllm_server import free_port

pytestmark = pytest.mark.vllm
MELD_EMOTIONS = {"neutral", "joy", "sadness", "anger", "surprise", "fear", "disgust"}
ARTIFACTS = Path(os.environ.get("MLLM_MER_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts"))


@pytest.fixture(scope="module")
def app_url(tiny_model, vllm_backend, tmp_path_factory):
    from mllm_mer.app.ui import build_demo, launch

    config = build(AppConfig, model=str(tiny_model), backend="vllm", max_frames=4, max_new_tokens=2048,
                   runs_dir=str(tmp_path_factory.mktemp("app-runs")), port=free_port(), max_upload_mb=20)
    service = Service(config, backend=vllm_backend)
    demo = build_demo(service)
    _, url, _ = launch(demo, service, prevent_thread_lock=True, quiet=True)
    yield url
    demo.close()


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("app-media") / "clip.mp4", seconds=1.5, fps=8, tone_hz=300)


def analyse(client, video, transcript="You did WHAT?", context=None):
    from gradio_client import handle_file

    table = {"headers": ["speaker", "text"], "data": context or [["Rachel", "I threw out your sandwich."]]}
    return client.predict(handle_file(str(video)) if video else None, None, transcript, table, "meld", "zero_shot",
                          "(base model)", api_name="/analyse")


def assert_valid(result):
    summary, first, second, rationale, cues, frames = result
    assert "emotion:" in summary and "sentiment:" in summary, summary
    assert first["label"] in MELD_EMOTIONS
    assert second["label"] in {"neutral", "positive", "negative"}
    assert abs(sum(c["confidence"] for c in first["confidences"]) - 1) < 1e-3


def test_analyse_endpoint_returns_labels_probabilities_and_frames(app_url, clip):
    from gradio_client import Client

    result = analyse(Client(app_url, verbose=False), clip)
    assert_valid(result)
    assert len(result[5]) == 4  # the sampled frames, shown as a strip


def test_twenty_concurrent_calls_all_get_valid_answers(app_url, clip):
    from gradio_client import Client

    def one(i):
        return analyse(Client(app_url, verbose=False), clip, transcript=f"Call number {i}, really?")

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(one, range(20)))
    assert len(results) == 20
    for result in results:
        assert_valid(result)


def test_chat_answers_a_follow_up_about_the_same_clip(app_url, clip):
    from gradio_client import Client

    client = Client(app_url, verbose=False)
    assert_valid(analyse(client, clip))
    history, cleared = client.predict("Which cue weighed most?", [], api_name="/chat")
    assert [m["role"] for m in history] == ["user", "assistant"]
    from mllm_mer.app.ui import _text

    assert _text(history[0]["content"]) == "Which cue weighed most?"
    assert [m["role"] for m in history] == ["user", "assistant"]  # one exchange, answered
    # a second question carries the first exchange along
    history2, _ = client.predict("And the context?", history, api_name="/chat")
    assert [_text(m["content"]) for m in history2[:2]] == [_text(m["content"]) for m in history]
    assert len(history2) == 4
    assert cleared == ""


def test_corrupt_upload_is_a_readable_error_and_the_app_keeps_serving(app_url, clip, tmp_path):
    from gradio_client import Client

    bad = tmp_path / "broken.mp4"
    bad.write_bytes(os.urandom(5000))
    client = Client(app_url, verbose=False)
    summary = analyse(client, bad)[0]
    assert "Could not analyse" in summary and "not a readable media file" in summary
    assert "Traceback" not in summary
    assert_valid(analyse(client, clip))


def test_wrong_upload_type_is_refused(app_url, tmp_path):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    text = tmp_path / "notes.txt"
    text.write_text("not a video")
    with pytest.raises(AppError, match="video must be one of"):
        analyse(Client(app_url, verbose=False), text)


@pytest.mark.browser
def test_in_headless_chromium_upload_type_submit_and_see_the_label(app_url, clip):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-quic"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(app_url)
            page.locator("input[type=file]").first.set_input_files(str(clip))
            page.get_by_label("Transcript").fill("You did WHAT?")
            page.get_by_role("button", name="Analyse").click()
            page.get_by_text("emotion:").first.wait_for(timeout=120_000)
            summary = page.get_by_text("emotion:").first.inner_text()
            assert any(f"emotion: {label}" in summary for label in MELD_EMOTIONS), summary
            # the probability chart of the first task shows a bar per label
            chart = page.locator(".gradio-container").inner_text()
            assert sum(label in chart for label in MELD_EMOTIONS) >= 3
            page.screenshot(path=str(ARTIFACTS / "app.png"), full_page=True)
        finally:
            browser.close()
    assert (ARTIFACTS / "app.png").stat().st_size > 10_000


def test_batch_tab_runs_a_manifest_and_offers_the_predictions(app_url, clip, tmp_path):
    import json

    from gradio_client import Client, handle_file

    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({"id": f"s{i}", "text": t, "label": lab, "video": str(clip)}) + "\n"
                                for i, (t, lab) in enumerate([("Great news!", "joy"), ("Get out.", "anger"),
                                                              ("Okay.", "neutral")])))
    rows, confusion, predictions, status = Client(app_url, verbose=False).predict(
        handle_file(str(manifest)), "meld", "emotion", None, api_name="/batch")
    assert "3 samples, 0 failed" in status
    assert rows["data"][0][0] == "emotion" and rows["data"][0][1] == 3
    assert Path(confusion).stat().st_size > 0
    lines = Path(predictions).read_text().splitlines()
    assert sorted(json.loads(x)["id"] for x in lines) == ["s0", "s1", "s2"]
