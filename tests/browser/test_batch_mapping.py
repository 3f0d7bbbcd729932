"""The Batch tab in headless Chromium: a zip whose manifest names its columns otherwise is mapped on the page
and runs; the page shows the columns it expects and no server path."""
import os
import zipfile
from pathlib import Path

import pytest

from mllm_mer.app.service import Service
from mllm_mer.config import AppConfig, build
from mllm_mer.serving.vllm_server import free_port
from mllm_mer.synthetic.media import write_wav

pytestmark = pytest.mark.browser
ARTIFACTS = Path(os.environ.get("MLLM_MER_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts"))
WAIT_MS = 600_000  # a condition awaited, not a clock raced: a loaded machine only makes it later


@pytest.fixture(scope="module")
def app_url(tiny_model, hf_backend, tmp_path_factory):
    from mllm_mer.app.ui import build_demo, launch

    runs = tmp_path_factory.mktemp("batch-app-runs")
    config = build(AppConfig, model=str(tiny_model), backend="transformers", max_new_tokens=64,
                   runs_dir=str(runs), port=free_port(), max_upload_mb=20)
    service = Service(config, backend=hf_backend)
    demo = build_demo(service)
    _, url, _ = launch(demo, service, prevent_thread_lock=True)
    yield url
    demo.close()


def _zip(tmp_path) -> Path:
    archive = tmp_path / "renamed.zip"
    rows = ["clip_id,utterance,emotion_gold,wav_path"]
    with zipfile.ZipFile(archive, "w") as z:
        for i, (text, label) in enumerate([("Great news!", "joy"), ("Get out.", "anger")]):
            wav = write_wav(tmp_path / f"a{i}.wav", seconds=0.5)
            z.write(wav, f"audio/a{i}.wav")
            rows.append(f"c{i},{text},{label},audio/a{i}.wav")
        z.writestr("table.csv", "\n".join(rows) + "\n")
    return archive


def _browser(manager):
    return manager.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=[
        "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"])


def test_in_chromium_a_zip_with_other_column_names_is_mapped_and_runs(app_url, tmp_path):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as manager:
        browser = _browser(manager)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1300})
            page.set_default_timeout(WAIT_MS)
            page.goto(app_url)
            page.get_by_role("tab", name="Batch").click()
            expected = page.locator("#batch-columns")
            assert "Expected columns" in expected.inner_text()
            page.locator("input[type=file][accept*='.zip']").set_input_files(str(_zip(tmp_path)))
            # The upload's own columns are read and a mapping is offered before anything runs.
            page.get_by_text("table.csv has columns").wait_for()
            assert "id ← clip_id" in expected.inner_text() and "audio ← wav_path" in expected.inner_text()
            page.get_by_role("checkbox", name="video").uncheck()
            page.get_by_role("radio", name="score").check()
            page.get_by_role("button", name="Run").click()
            page.get_by_text("2 samples, 0 failed").wait_for()
            page.screenshot(path=str(ARTIFACTS / "batch-mapping.png"), full_page=True)
            text = page.locator(".gradio-container").inner_text()
        finally:
            browser.close()
    assert "/tmp" not in text and "batch-app-runs" not in text  # the model is named, not its server folder
    assert "tiny-qwen2-vl" in text


def test_in_chromium_a_wrong_mapping_names_the_column_and_no_server_path(app_url, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as manager:
        browser = _browser(manager)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1300})
            page.set_default_timeout(WAIT_MS)
            page.goto(app_url)
            page.get_by_role("tab", name="Batch").click()
            page.locator("input[type=file][accept*='.zip']").set_input_files(str(_zip(tmp_path)))
            page.get_by_text("table.csv has columns").wait_for()
            label = page.get_by_role("combobox", name="label column")
            label.fill("mood")  # a name the file does not have (none of its columns contains it)
            label.blur()
            page.get_by_role("button", name="Run").click()
            toast = page.get_by_text("no label column 'mood'").first
            toast.wait_for()
            page.screenshot(path=str(ARTIFACTS / "batch-mapping-error.png"), full_page=True)
            message = toast.inner_text()
            # Visible markers only: Gradio also announces the error to screen readers in a hidden live
            # region (`.sr-only`), present or already cleared depending on when the page is read.
            badges = page.evaluate("""() => [...document.querySelectorAll('.gradio-container *')]
                .filter(e => e.childElementCount === 0 && e.textContent.trim() === 'Error'
                             && !e.closest('[class*=toast], .sr-only, [aria-live]')).length""")
        finally:
            browser.close()
    assert message.startswith("table.csv: no label column 'mood'"), message
    assert "/" not in message.split(":", 1)[0] and "batch-app-runs" not in message
    assert badges <= 1  # the toast says it, at most one marker (the status line's), not one per output


def test_in_chromium_the_conversation_table_shows_every_column_and_a_click_only_selects(app_url, app_talk):
    from playwright.sync_api import sync_playwright

    video, srt = app_talk
    with sync_playwright() as manager:
        browser = _browser(manager)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1400})
            page.set_default_timeout(WAIT_MS)
            page.goto(app_url)
            page.get_by_role("tab", name="Conversation").click()
            page.locator("#conversation-video input[type=file]").set_input_files(str(video))
            page.locator("#conversation-transcript input[type=file]").set_input_files(str(srt))
            page.locator("#conversation-transcript").get_by_text("talk.srt").first.wait_for()
            page.get_by_role("button", name="Analyse conversation").click()
            page.get_by_text("1. Ann").first.wait_for()
            table = page.locator("#conversation-table")
            table.get_by_text("Did what? I was only joking.").first.click()
            page.get_by_text("2. Bob").first.wait_for()
            page.screenshot(path=str(ARTIFACTS / "conversation-table.png"), full_page=True)
            editing = table.locator("textarea:visible, input:visible").count()
            page.keyboard.type("zzq")
            page.keyboard.press("Enter")
            page.wait_for_timeout(500)  # a keystroke's echo, if any, is immediate
            typed = table.get_by_text("zzq").count()
            cut = page.evaluate("""() => [...document.querySelectorAll('#conversation-table *')]
                .filter(e => e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).overflowX !== 'visible')
                .map(e => e.className)""")
            headers = table.locator("th").all_inner_texts()
        finally:
            browser.close()
    assert editing == 0 and typed == 0  # the click selected the row; no cell editor opened, typing changed nothing
    assert cut == []  # nothing scrolls sideways: the probability columns are in view
    assert any("P(emotion)" in h for h in headers) and any("most probable" in h for h in headers)
