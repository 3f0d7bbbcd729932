"""The Gradio app on the tiny checkpoint and the session's vLLM engine: API, concurrency, chat, errors, browser."""
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mllm_mer.app.service import Service
from mllm_mer.config import AppConfig, build
from mllm_mer.serving.vllm_server import free_port
from mllm_mer.synthetic.media import write_clip

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


def analyse(client, video, transcript="You did WHAT?", context=None, strategy="single"):
    from gradio_client import handle_file

    table = {"headers": ["speaker", "text"], "data": context or [["Rachel", "I threw out your sandwich."]]}
    return client.predict(handle_file(str(video)) if video else None, None, transcript, table, "meld", "zero_shot",
                          "(base model)", ["text", "video", "audio"], False, strategy, api_name="/analyse")


def assert_valid(result):
    summary, first, second, rationale, cues, frames = result[:6]
    assert "emotion:" in summary and "sentiment:" in summary, summary
    assert (first["label"], second["label"]) == ("emotion", "sentiment")  # panels titled by their task
    assert first["value"]["label"] in MELD_EMOTIONS
    assert second["value"]["label"] in {"neutral", "positive", "negative"}
    assert f"emotion: {first['value']['label']}" in summary  # the panel's head is the answer's label
    assert abs(sum(c["confidence"] for c in first["value"]["confidences"]) - 1) < 1e-3


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


def test_agent_strategy_shows_its_steps_as_collapsible_tool_messages(app_url, clip):
    from gradio_client import Client

    client = Client(app_url, verbose=False)
    result = analyse(client, clip, strategy="agent")
    assert_valid(result)
    prediction = json.loads(Path(result[9]).read_text())
    trace = prediction["trace"]
    assert trace and trace[-1]["tool"] == "answer"
    tools = [step for step in trace if step["tool"] != "answer"]
    chat = result[10]
    titles = [(m.get("metadata") or {}).get("title", "") for m in chat]
    assert len(chat) == (len(tools) + 1 if tools else 0)
    assert all(t.startswith(f"step {s['step']}: {s['tool']}(") for t, s in zip(titles, tools, strict=False))
    # The chat goes on after the tool messages: they are not taken for turns.
    history, _ = client.predict("Why that label?", chat, api_name="/chat")
    assert len(history) == len(chat) + 2 and history[-1]["role"] == "assistant"


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
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="the question is 60000 characters; at most 2000"):
        client.predict("why? " * 12_000, [], api_name="/chat")


def test_corrupt_upload_is_a_readable_error_and_the_app_keeps_serving(app_url, clip, tmp_path):
    from gradio_client import Client

    bad = tmp_path / "broken.mp4"
    bad.write_bytes(os.urandom(5000))
    client = Client(app_url, verbose=False)
    summary = analyse(client, bad)[0]
    assert "Could not analyse" in summary and "not a readable media file" in summary
    assert "broken.mp4" in summary and "/tmp" not in summary and "gradio" not in summary  # the user's name only
    assert "Traceback" not in summary
    assert_valid(analyse(client, clip))


def test_wrong_upload_type_is_refused_without_a_traceback_in_the_log(app_url, tmp_path, capfd):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    text = tmp_path / "notes.txt"
    text.write_text("not a video")
    with pytest.raises(AppError, match="video must be one of"):
        analyse(Client(app_url, verbose=False), text)
    logged = capfd.readouterr()
    assert "Traceback" not in logged.err + logged.out  # the user's mistake, told on the page only


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
            page.get_by_label("Transcript", exact=True).fill("You did WHAT?")
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


def test_batch_media_outside_the_upload_fails_alike_whether_or_not_it_exists(app_url, clip, tmp_path):
    import json

    from gradio_client import Client, handle_file

    rows = [("in", "Great news!", "joy", None), ("outside", "Get out.", "anger", str(clip)),
            ("missing-outside", "Okay.", "neutral", "/etc/nope/never.mp4"), ("traversal", "Hm.", "neutral",
                                                                            "../../../etc/passwd")]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({"id": i, "text": t, "label": lab, **({"video": v} if v else {})}) + "\n"
                                for i, t, lab, v in rows))
    table, _, archive, status, failures = Client(app_url, verbose=False).predict(
        handle_file(str(manifest)), "meld", "label_only", "emotion", None, None, api_name="/batch")
    assert "4 samples, 3 failed (media 3)" in status
    reasons = {row[0]: row[2] for row in failures["data"]}
    assert set(reasons) == {"outside", "missing-outside", "traversal"}
    messages = {r.split(":", 1)[1] for r in reasons.values()}
    assert messages == {" is outside the folders this app may read"}  # no existence oracle, no server path
    assert str(clip.parent) not in str(failures) and "/tmp" not in str(failures)
    assert Path(archive).suffix == ".zip"


def test_batch_failure_reasons_name_the_users_own_paths(app_url, clip, tmp_path):
    import json
    import zipfile

    from gradio_client import Client, handle_file

    archive = tmp_path / "b.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(clip, "clips/c0.mp4")
        z.writestr("m.jsonl", json.dumps({"id": "s0", "text": "Fine.", "label": "neutral", "video": "clips/c0.mp4"})
                   + "\n" + json.dumps({"id": "s1", "text": "Oh.", "label": "joy", "video": "clips/gone.mp4"}) + "\n")
    _, _, _, status, failures = Client(app_url, verbose=False).predict(
        handle_file(str(archive)), "meld", "label_only", "emotion", None, None, api_name="/batch")
    assert "2 samples, 1 failed (media 1)" in status
    [[sample, kind, reason]] = failures["data"]
    assert (sample, kind) == ("s1", "media") and reason.startswith("clips/gone.mp4: ") and "app-runs" not in reason


def _zip_of_manifest_and_clips(tmp_path, clip) -> Path:
    import json
    import zipfile

    archive = tmp_path / "batch.zip"
    with zipfile.ZipFile(archive, "w") as z:
        lines = []
        for i, (text, label) in enumerate([("Great news!", "joy"), ("Get out.", "anger"), ("Okay.", "neutral")]):
            z.write(clip, f"clips/c{i}.mp4")
            lines.append(json.dumps({"id": f"s{i}", "text": text, "label": label, "video": f"clips/c{i}.mp4"}))
        z.writestr("manifest.jsonl", "\n".join(lines) + "\n")
    return archive


def _browser():
    from playwright.sync_api import sync_playwright

    manager = sync_playwright().start()
    browser = manager.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=[
        "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"])
    return manager, browser


@pytest.mark.browser
def test_in_chromium_batch_zip_of_manifest_and_clips_gives_answered_rows_and_a_run_zip(app_url, clip, tmp_path):
    import zipfile

    manager, browser = _browser()
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(app_url)
        page.get_by_role("tab", name="Batch").click()
        page.locator("input[type=file][accept*='.zip']").set_input_files(str(_zip_of_manifest_and_clips(tmp_path,
                                                                                                       clip)))
        page.wait_for_timeout(1500)
        # The Batch run's own mode and modalities (#32): scored, without the audio.
        page.get_by_role("radio", name="score").check()
        page.get_by_role("checkbox", name="audio").uncheck()
        page.get_by_role("button", name="Run").click()
        page.get_by_text("3 samples, 0 failed").wait_for(timeout=180_000)
        page.screenshot(path=str(ARTIFACTS / "batch.png"), full_page=True)
        link = page.locator('a[download="run.zip"]').first
        link.wait_for(timeout=30_000)
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
    assert run["mode"] == "score" and run["modalities"] == ["text", "video"] and run["adapter"] is None


def _find_disagreement(app_url) -> tuple[str, str, str, str]:
    """(transcript, task, written, most probable): an input on which the random model writes one label while
    another is most probable (a greedy decoder can pick a shared first token, e.g. 's' of sadness/surprise)."""
    import random

    from gradio_client import Client
    from helpers import WORDS

    client, rng = Client(app_url, verbose=False), random.Random(0)
    for _ in range(40):
        transcript = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 8)))
        summary = client.predict(None, None, transcript, {"headers": ["speaker", "text"], "data": [["", ""]]},
                                 "meld", "label_only", "(base model)", ["text"], False, "single",
                                 api_name="/analyse")[0]
        for line in summary.splitlines():
            if "most probable:" in line:
                task, rest = line.strip("* ").split(": ", 1)
                return transcript, task, rest.split("**", 1)[0], line.split("most probable: ", 1)[1].split(" (")[0]
    pytest.fail("no input in 40 where the written and the most probable label differ")


@pytest.mark.browser
def test_in_chromium_the_headline_is_the_answers_label_and_a_new_analysis_clears_the_chat(app_url, clip):
    transcript, task, written, top = _find_disagreement(app_url)
    assert written != top
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
        page.get_by_text(f"{task}: {written}").first.wait_for(timeout=120_000)
        assert f"most probable: {top}" in page.locator(".gradio-container").inner_text()
        # each panel is titled by its task and headed by the written label, not the arg-max
        panel_heads = [h.strip() for h in page.locator('[data-testid="label-output-value"]').all_inner_texts()]
        index = 0 if task == "emotion" else 1
        assert panel_heads[index] == written, panel_heads
        assert page.get_by_text(task, exact=True).count() >= 1
        # chat about it, then analyse again: the chat starts over, about the new analysis
        page.get_by_role("tab", name="Chat").click()
        page.get_by_label("Question").fill("Which cue weighed most?")
        page.get_by_role("button", name="Ask").click()
        page.get_by_text("Which cue weighed most?").first.wait_for(timeout=120_000)
        page.get_by_role("button", name="Ask").wait_for(state="visible")
        page.wait_for_function("() => !document.querySelector('button.primary[disabled]')", timeout=120_000)
        page.get_by_role("tab", name="Analyse").click()
        page.get_by_label("Transcript", exact=True).fill("Something else entirely.")
        page.get_by_role("button", name="Analyse").click()
        page.wait_for_timeout(500)
        page.get_by_role("tab", name="Chat").click()
        page.get_by_text("About:").first.wait_for(timeout=120_000)
        page.wait_for_function("() => !document.body.innerText.includes('Which cue weighed most?')",
                               timeout=120_000)
    finally:
        browser.close()
        manager.stop()


def test_chat_streams_partial_text_on_the_vllm_engine(app_url):
    """The chat endpoint yields the answer as it grows (the engine's own request loop), not whole."""
    from gradio_client import Client

    client = Client(app_url, verbose=False)
    client.predict(None, None, "Stream this, please.", {"headers": ["speaker", "text"], "data": [["", ""]]},
                   "meld", "zero_shot", "(base model)", ["text"], False, "single", api_name="/analyse")
    job = client.submit("Tell me more about it.", [], api_name="/chat")
    lengths = [len(str(update[0][-1]["content"])) for update in job]
    # Growing text, update by update (a random model's byte fragments may be re-decoded a few characters
    # shorter when their character completes, so growth is checked overall, not at every step).
    assert len(lengths) >= 3 and lengths[0] < lengths[-1] == max(lengths), lengths
    assert sum(b >= a for a, b in zip(lengths, lengths[1:], strict=False)) >= 0.9 * (len(lengths) - 1), lengths


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
        page.get_by_text("emotion:").first.wait_for(timeout=120_000)
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
        page.wait_for_function("() => !!document.querySelector('button.primary[disabled]')", timeout=60_000)
        page.wait_for_function("() => !document.querySelector('button.primary[disabled]')", timeout=120_000)
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


def test_cli_app_on_transformers_is_up_at_once_saying_loading(tiny_model, tmp_path):
    """`mllm-mer app` as a user types it: the page answers while the model loads, then says ready."""
    import subprocess
    import sys
    import time

    import httpx

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mllm_mer.cli", "app", "--model", str(tiny_model), "--backend",
                             "transformers", "--port", str(port), "--runs-dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        started, config = time.monotonic(), None
        # 20 s: Python, torch and gradio imports on a busy 2-core machine (9 s alone, measured); the model
        # itself is still loading, which the page must say.
        while time.monotonic() - started < 20 and config is None:
            try:
                config = httpx.get(f"http://127.0.0.1:{port}/config", timeout=1).text
            except httpx.HTTPError:
                time.sleep(0.2)
        assert config is not None, "the page did not answer within 20 s of launch"
        assert "**loading**" in config  # what the page showed first
        from gradio_client import Client

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            result = Client(f"http://127.0.0.1:{port}/", verbose=False).predict(
                None, None, "Hello!", {"headers": ["speaker", "text"], "data": [["", ""]]}, "meld", "label_only",
                "(base model)", ["text"], True, "single", api_name="/analyse")
            if "emotion:" in result[0]:
                break
        assert "emotion:" in result[0]
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_wrong_logins_are_slowed_then_locked_out():
    import time

    from mllm_mer.app.ui import LoginGuard

    guard = LoginGuard("ann:secret", delay_s=0.05, max_failures=3, lockout_s=60)
    assert guard("ann", "secret")
    started = time.monotonic()
    assert not any(guard("ann", f"guess{i}") for i in range(3))
    assert time.monotonic() - started >= 0.15  # each wrong login costs its delay
    assert not guard("ann", "secret")  # locked out now, even with the right password


def test_a_stranger_guessing_does_not_lock_out_the_real_user():
    from mllm_mer.app.ui import CLIENT, LoginGuard

    guard = LoginGuard("ann:secret", delay_s=0.0, max_failures=3, lockout_s=60)
    CLIENT.set("10.0.0.66")
    assert not any(guard("ann", f"guess{i}") for i in range(5))
    assert not guard("ann", "secret")  # that client is locked out
    CLIENT.set("10.0.0.7")
    assert guard("ann", "secret")  # another one is not


def test_the_app_serves_no_openapi_description_without_a_login(app_url):
    import httpx

    assert httpx.get(f"{app_url.rstrip('/')}/openapi.json", timeout=10).status_code == 404


def test_the_chat_shows_model_text_as_text_not_markdown_and_tabs_share_the_cli_defaults(app_url):
    """A `~` in an answer must not strike text through: the chat does not render Markdown."""
    import httpx

    components = httpx.get(f"{app_url.rstrip('/')}/config", timeout=10).json()["components"]
    [chat] = [c for c in components if c["type"] == "chatbot"]
    assert chat["props"]["render_markdown"] is False
    # One set of defaults: every tab's template is the CLI's (zero_shot when the config names none).
    templates = [c["props"]["value"] for c in components if c.get("props", {}).get("label") == "Template"]
    assert templates == ["zero_shot", "zero_shot", "zero_shot"]


@pytest.fixture(scope="module")
def talk(tmp_path_factory):
    from test_dialogue import SRT

    root = tmp_path_factory.mktemp("talk")
    (root / "talk.srt").write_text(SRT)
    return write_clip(root / "talk.mp4", seconds=4.0, fps=8, tone_hz=220), root / "talk.srt"


def test_conversation_endpoint_gives_the_timeline_table_and_details(app_url, talk):
    from gradio_client import Client, handle_file

    video, srt = talk
    plot, table, report, detail, frames, rationale, probabilities = Client(app_url, verbose=False).predict(
        handle_file(str(video)), None, handle_file(str(srt)), "meld", "label_only", "predicted",
        api_name="/conversation")
    from PIL import Image

    with Image.open(plot) as image:
        assert image.size[0] > 300
    rows = table["data"]
    assert [r[1] for r in rows] == ["Ann", "Bob", "Ann"] and [r[2] for r in rows] == [0.0, 1.2, 2.4]
    assert all(r[5] in MELD_EMOTIONS for r in rows)
    assert "context labels: predicted" in Path(report).read_text()
    assert detail.startswith("**1. Ann**") and len(frames) >= 1  # the first utterance's own frames
    assert probabilities["label"] == rows[0][5]
    # One convention with the Analyse headline: the answer's label and P, and the most probable one beside it.
    shown = {c["label"]: c["confidence"] for c in probabilities["confidences"]}
    top = max(shown, key=shown.get)
    assert f"**emotion: {rows[0][5]}** ({shown[rows[0][5]]:.0%})" in detail
    assert rows[0][6] == pytest.approx(shown[rows[0][5]], abs=1e-3)
    assert (rows[0][7] == f"{top} ({shown[top]:.0%})" and f"most probable: {top}" in detail) if top != rows[0][5] \
        else (rows[0][7] == "" and "most probable" not in detail)


def test_conversation_with_a_broken_transcript_names_the_users_file(app_url, talk, tmp_path):
    from gradio_client import Client, handle_file

    video, _ = talk
    bad = tmp_path / "meeting.srt"
    bad.write_bytes("1\n00:00:00,000 --> 00:00:01,000\nCaf\xe9\n".encode("latin-1"))
    plot, table, report, detail, frames, rationale, probabilities = Client(app_url, verbose=False).predict(
        handle_file(str(video)), None, handle_file(str(bad)), "meld", "label_only", "predicted",
        api_name="/conversation")  # shown inline, as the Analyse tab shows its errors: no toast, no red badges
    assert detail.startswith("**Could not analyse the conversation:**") and "meeting.srt:3: not UTF-8" in detail
    assert plot is None and table["data"] in ([], [[]], [["", "", "", "", "", "", "", ""]]) and report is None


@pytest.mark.browser
def test_in_chromium_a_conversation_row_shows_its_utterance(app_url, talk):
    video, srt = talk
    manager, browser = _browser()
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1400})
        page.goto(app_url)
        page.get_by_role("tab", name="Conversation").click()
        page.locator("#conversation-video input[type=file]").set_input_files(str(video))
        page.wait_for_timeout(1000)
        page.get_by_role("button", name="Analyse conversation").click()  # no transcript yet: said inline
        page.get_by_text("Could not analyse the conversation").first.wait_for(timeout=30_000)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(ARTIFACTS / "conversation-no-transcript.png"), full_page=True)
        assert page.get_by_text("Error", exact=True).count() == 0  # no red badge on any output
        page.locator("#conversation-transcript input[type=file]").set_input_files(str(srt))
        page.wait_for_timeout(1500)
        page.get_by_role("button", name="Analyse conversation").click()
        page.get_by_text("**1. Ann**").or_(page.get_by_text("1. Ann")).first.wait_for(timeout=180_000)
        page.locator("#conversation-table").get_by_text("Did what? I was only joking.").first.click()
        page.get_by_text("2. Bob").first.wait_for(timeout=30_000)
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


def test_a_batch_run_answers_with_the_adapter_chosen_or_the_base_model():
    from mllm_mer.app.service import batch_model
    from mllm_mer.config import ModelConfig

    model = ModelConfig(model="m", adapter=["a=/runs/a", "b=/runs/b"])
    assert batch_model(model, "b").adapters == {"b": "/runs/b", "a": "/runs/a"}  # a run answers with its first
    assert list(batch_model(model, "b").adapters)[0] == "b"
    assert batch_model(model, None).adapters == {}
    with pytest.raises(ValueError, match="unknown adapter 'c'; this app serves: a, b"):
        batch_model(model, "c")
