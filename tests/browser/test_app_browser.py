"""The Gradio app in headless Chromium, on the tiny checkpoint and the session's vLLM engine: what a user clicks
and sees."""
import json
import os
from pathlib import Path

import pytest
from helpers import MELD_EMOTIONS

from mllm_mer.core.types import MODALITIES

pytestmark = pytest.mark.vllm
ARTIFACTS = Path(os.environ.get("MLLM_MER_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"))


def _browser():
    from playwright.sync_api import sync_playwright

    manager = sync_playwright().start()
    browser = manager.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=[
        "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"])
    return manager, browser


def _answer(app_url, transcript: str) -> tuple[str, str]:
    """(the summary, the emotion label it heads with) of one analysis over the app's API."""
    from gradio_client import Client

    summary = Client(app_url, verbose=False).predict(
        None, None, transcript, {"headers": ["speaker", "text"], "data": [["", ""]]}, "meld", "label_only",
        "(base model)", ["text"], False, "single", api_name="/analyse")[0]
    line = next(line for line in summary.splitlines() if "emotion: " in line)
    return summary, line.split("emotion: ", 1)[1].split("**", 1)[0].strip()


def _zip_of_manifest_and_clips(tmp_path, app_clip) -> Path:
    import json
    import zipfile

    archive = tmp_path / "batch.zip"
    with zipfile.ZipFile(archive, "w") as z:
        lines = []
        for i, (text, label) in enumerate([("Great news!", "joy"), ("Get out.", "anger"), ("Okay.", "neutral")]):
            z.write(app_clip, f"clips/c{i}.mp4")
            lines.append(json.dumps({"id": f"s{i}", "text": text, "label": label, "video": f"clips/c{i}.mp4"}))
        z.writestr("manifest.jsonl", "\n".join(lines) + "\n")
    return archive


@pytest.mark.browser
def test_in_headless_chromium_upload_type_submit_and_see_the_label(app_url, app_clip):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-quic"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(app_url)
            page.locator("input[type=file]").first.set_input_files(str(app_clip))
            page.get_by_label("Transcript", exact=True).fill("You did WHAT?")
            page.get_by_role("button", name="Analyse").click()
            page.get_by_text("emotion:").first.wait_for(timeout=600_000)
            summary = page.get_by_text("emotion:").first.inner_text()
            assert any(f"emotion: {label}" in summary for label in MELD_EMOTIONS), summary
            # the probability chart of the first task shows a bar per label
            chart = page.locator(".gradio-container").inner_text()
            assert sum(label in chart for label in MELD_EMOTIONS) >= 3
            page.screenshot(path=str(ARTIFACTS / "app.png"), full_page=True)
        finally:
            browser.close()
    assert (ARTIFACTS / "app.png").stat().st_size > 10_000


@pytest.mark.browser
def test_in_chromium_batch_zip_of_manifest_and_clips_gives_answered_rows_and_a_run_zip(app_url, app_clip, tmp_path):
    import zipfile

    manager, browser = _browser()
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(app_url)
        page.get_by_role("tab", name="Batch").click()
        upload = _zip_of_manifest_and_clips(tmp_path, app_clip)
        page.locator("input[type=file][accept*='.zip']").set_input_files(str(upload))
        page.wait_for_timeout(1500)
        # The Batch run's own mode and modalities (#32): scored, without the audio.
        page.get_by_role("radio", name="score").check()
        page.get_by_role("checkbox", name="audio").uncheck()
        page.get_by_role("button", name="Run").click()
        page.get_by_text("3 samples, 0 failed").wait_for(timeout=600_000)
        page.screenshot(path=str(ARTIFACTS / "batch.png"), full_page=True)
        link = page.locator('a[download="run.zip"]').first
        link.wait_for(timeout=300_000)
        with page.expect_download() as download:
            link.click()
        saved = tmp_path / "run.zip"
        download.value.save_as(saved)
    finally:
        browser.close()
        manager.stop()
    names = set(zipfile.ZipFile(saved).namelist())
    assert {"predictions.jsonl", "metrics.json", "report.md", "run.json"} <= names
    lines = zipfile.ZipFile(saved).read("predictions.jsonl").decode().splitlines()
    assert sorted(json.loads(x)["id"] for x in lines) == ["s0", "s1", "s2"]
    assert all(json.loads(x)["prediction"]["ok"] for x in lines)
    run = json.loads(zipfile.ZipFile(saved).read("metrics.json"))["run"]
    assert run["mode"] == "score" and run["modalities"] == [m for m in MODALITIES if m != "audio"]
    assert run["adapter"] is None


@pytest.mark.browser
def test_in_chromium_the_headline_is_the_answers_label_and_a_new_analysis_clears_the_chat(app_url, app_clip):
    transcript = "You did WHAT? Never again."
    summary, written = _answer(app_url, transcript)
    assert "most probable:" not in summary  # greedy: the answer's label is the top of its own distribution
    manager, browser = _browser()
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(app_url)
        page.get_by_label("Video", exact=True).locator("..")  # the page is up
        page.get_by_label("Transcript", exact=True).fill(transcript)
        page.get_by_label("video", exact=True).uncheck()
        page.get_by_label("audio", exact=True).uncheck()
        page.get_by_label("Template").click()
        page.get_by_role("option", name="label_only").click()
        page.get_by_role("button", name="Analyse").click()
        page.get_by_text(f"emotion: {written}").first.wait_for(timeout=600_000)
        assert "most probable:" not in page.locator(".gradio-container").inner_text()
        # the emotion panel is headed by the answer's label, which is also the top of its bars
        panel_heads = [h.strip() for h in page.locator('[data-testid="label-output-value"]').all_inner_texts()]
        assert panel_heads[0] == written, panel_heads
        assert page.get_by_text("emotion", exact=True).count() >= 1
        # chat about it, then analyse again: the chat starts over, about the new analysis
        page.get_by_role("tab", name="Chat").click()
        page.get_by_label("Question").fill("Which cue weighed most?")
        page.get_by_role("button", name="Ask").click()
        page.get_by_text("Which cue weighed most?").first.wait_for(timeout=600_000)
        page.get_by_role("button", name="Ask").wait_for(state="visible")
        page.wait_for_function("() => !document.querySelector('button.primary[disabled]')", timeout=600_000)
        page.get_by_role("tab", name="Analyse").click()
        page.get_by_label("Transcript", exact=True).fill("Something else entirely.")
        page.get_by_role("button", name="Analyse").click()
        page.wait_for_timeout(500)
        page.get_by_role("tab", name="Chat").click()
        page.get_by_text("About:").first.wait_for(timeout=600_000)
        page.wait_for_function("() => !document.body.innerText.includes('Which cue weighed most?')",
                               timeout=600_000)
    finally:
        browser.close()
        manager.stop()


@pytest.mark.browser
def test_in_chromium_the_chat_answer_grows_on_screen_before_it_ends(app_url):
    """Streaming as a person sees it (vLLM engine): the answer's text is read from the page while Ask is
    still disabled, and several shorter texts appear before the final one."""
    manager, browser = _browser()
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(app_url)
        page.get_by_label("Transcript", exact=True).fill("Stream this, please.")
        page.get_by_label("video", exact=True).uncheck()
        page.get_by_label("audio", exact=True).uncheck()
        page.get_by_role("button", name="Analyse").click()
        page.get_by_text("emotion:").first.wait_for(timeout=600_000)
        page.get_by_role("tab", name="Chat").click()
        page.get_by_label("Question").fill("Tell me more about it.")
        # Every rendering of the last bot message is recorded as it happens (not sampled by polling).
        page.evaluate("""() => {
            window.__seen = [];
            new MutationObserver(() => {
                const bots = document.querySelectorAll('[data-testid="bot"]');
                if (bots.length) window.__seen.push([bots.length, bots[bots.length - 1].innerText]);
            }).observe(document.body, {subtree: true, childList: true, characterData: true});
        }""")
        page.get_by_role("button", name="Ask").click()
        page.wait_for_function("() => !!document.querySelector('button.primary[disabled]')", timeout=600_000)
        page.wait_for_function("() => !document.querySelector('button.primary[disabled]')", timeout=600_000)
        page.wait_for_timeout(300)
        renders = page.evaluate("() => window.__seen")
    finally:
        browser.close()
        manager.stop()
    answer_count = max(n for n, _ in renders)
    seen = [text for n, text in renders if n == answer_count and text]
    final = seen[-1]
    seen = [t for i, t in enumerate(seen) if i == 0 or t != seen[i - 1]]
    partial = [t for t in seen if len(t) < len(final)]
    assert final and len(partial) >= 3, (len(seen), [len(t) for t in seen], len(final))


@pytest.mark.browser
def test_in_chromium_a_conversation_row_shows_its_utterance(app_url, app_talk):
    video, srt = app_talk
    manager, browser = _browser()
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1400})
        page.goto(app_url)
        page.get_by_role("tab", name="Conversation").click()
        page.locator("#conversation-video input[type=file]").set_input_files(str(video))
        page.wait_for_timeout(1000)
        page.get_by_role("button", name="Analyse conversation").click()  # no transcript yet: said inline
        page.get_by_text("Could not analyse the conversation").first.wait_for(timeout=300_000)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(ARTIFACTS / "conversation-no-transcript.png"), full_page=True)
        assert page.get_by_text("Error", exact=True).count() == 0  # no red badge on any output
        page.locator("#conversation-transcript input[type=file]").set_input_files(str(srt))
        page.wait_for_timeout(1500)
        page.get_by_role("button", name="Analyse conversation").click()
        page.get_by_text("**1. Ann**").or_(page.get_by_text("1. Ann")).first.wait_for(timeout=600_000)
        page.locator("#conversation-table").get_by_text("Did what? I was only joking.").first.click()
        page.get_by_text("2. Bob").first.wait_for(timeout=300_000)
        page.screenshot(path=str(ARTIFACTS / "conversation.png"), full_page=True)
        # Read-only cells (typing into a clicked cell changes nothing), no label box over the timeline's title.
        page.keyboard.type("zzq")
        page.keyboard.press("Enter")
        page.wait_for_timeout(500)
        assert page.locator("#conversation-table").get_by_text("zzq").count() == 0
        assert page.locator("#conversation-table").get_by_text("Did what? I was only joking.").count() >= 1
        assert not page.locator("#conversation-timeline").get_by_text("Timeline: one lane per speaker").first \
            .is_visible()
    finally:
        browser.close()
        manager.stop()


@pytest.mark.browser
def test_in_chromium_the_reasoning_shows_before_the_answer_and_the_headline_is_the_top_bar(app_url):
    """--reasoning before in the Analyse tab: the reasoning block is on screen (collapsible, above the answer)
    while the answer is still being written; then the headline, whose label heads the bars."""
    manager, browser = _browser()
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(app_url)
        page.get_by_label("Transcript", exact=True).fill("You did WHAT? Never again.")
        page.get_by_label("video", exact=True).uncheck()
        page.get_by_label("audio", exact=True).uncheck()
        page.get_by_label("Template").click()
        page.get_by_role("option", name="label_only").click()
        page.get_by_label("Reasoning", exact=True).click()
        page.get_by_role("option", name="before").click()
        # What the page shows, in the order it shows it (recorded as it happens, not sampled by polling).
        page.evaluate("""() => {
            window.__seen = [];
            const note = (what) => { if (!window.__seen.includes(what)) window.__seen.push(what); };
            new MutationObserver(() => {
                const answered = /emotion: /.test(document.querySelector('#headline')?.innerText || '');
                if (!answered && document.querySelector('#reasoning .reasoning-wait')) note('reasoning alone');
                if (answered) note('answer');
            }).observe(document.body, {subtree: true, childList: true, characterData: true});
        }""")
        page.get_by_role("button", name="Analyse").click()
        page.locator("#headline").get_by_text("emotion:").wait_for(timeout=300_000)
        block = page.locator("#reasoning details.reasoning-block")
        block.wait_for()
        assert page.evaluate("window.__seen") == ["reasoning alone", "answer"]
        assert block.locator("summary").inner_text().startswith("Reasoning (before, ")
        assert block.bounding_box()["y"] < page.locator("#headline").bounding_box()["y"]  # above the answer
        headline = page.locator("#headline").inner_text()
        label = headline.split("emotion: ", 1)[1].split(" ", 1)[0].strip()
        bars = page.locator('[data-testid="label"]').first
        top_bar = bars.locator(".confidence-set dt").first.inner_text().strip()
        assert label == top_bar == bars.locator('[data-testid="label-output-value"]').inner_text().strip(), headline
        assert "most probable:" not in headline
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "reasoning.png"), full_page=True)
        page.get_by_role("tab", name="Chat").click()  # the chat opens with the reasoning, collapsed
        page.locator("text=Reasoning (before, >> visible=true").first.wait_for(timeout=60_000)
    finally:
        browser.close()
        manager.stop()


@pytest.fixture(scope="module")
def signal_files(tmp_path_factory) -> tuple[Path, Path]:
    """(20 s of ECG, skin conductance and breathing at 128 Hz from NeuroKit2's simulators, an unreadable one)."""
    from mllm_mer.synthetic.physio import State, simulate, write_csv

    root = tmp_path_factory.mktemp("signals")
    channels = simulate(State(90, 18, 3), 20, 128)
    good = write_csv(root / "session.csv", {k: channels[k] for k in ("ECG", "EDA", "RESP")}, 128)
    (root / "broken.csv").write_text("time,ECG\n0,1\nzero,two\n")
    return good, root / "broken.csv"


@pytest.mark.browser
def test_in_chromium_a_signal_file_beside_the_clip_gives_heart_rate_cues_and_its_traces(app_url, app_clip,
                                                                                       signal_files):
    good, broken = signal_files
    manager, browser = _browser()
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1300})
        page.goto(app_url)
        page.locator("input[type=file]").first.set_input_files(str(app_clip))
        page.get_by_label("Transcript", exact=True).fill("I am fine, really.")
        signals = page.locator("#physio-upload input[type=file]")
        signals.set_input_files(str(broken))  # unreadable: said inline, naming the file, no traceback
        page.wait_for_timeout(1500)
        page.get_by_role("button", name="Analyse").click()
        page.locator("#headline").get_by_text("Could not analyse").wait_for(timeout=600_000)
        said = page.locator("#headline").inner_text()
        assert "broken.csv" in said and "Traceback" not in said and "/tmp" not in said, said
        assert not page.locator("#physio-traces").is_visible()
        page.locator("#physio-upload").get_by_role("button", name="Clear").click()
        page.locator("#physio-upload input[type=file]").set_input_files(str(good))
        page.wait_for_timeout(1500)
        page.get_by_role("button", name="Analyse").click()
        page.locator("#headline").get_by_text("emotion:").wait_for(timeout=600_000)
        traces = page.locator("#physio-traces img")
        traces.wait_for(timeout=60_000)
        assert traces.evaluate("img => img.naturalWidth") == 448  # the window drawn, shown beside the answer
        page.get_by_text("Details: transcript, vocal cues, the exact prompt").click()
        cues = page.locator("#physio-cues textarea").input_value()
        assert "heart rate 9" in cues and "bpm (ECG)" in cues and "breathing" in cues, cues
        prompt = page.get_by_label("Prompt", exact=True).input_value()
        assert "<physio_cues>" in prompt and "heart rate 9" in prompt, prompt
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "app-physio.png"), full_page=True)
    finally:
        browser.close()
        manager.stop()
