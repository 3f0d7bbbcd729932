"""The Gradio app on the tiny checkpoint and the session's vLLM engine: API, concurrency, chat, errors, browser."""
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from helpers import MELD_EMOTIONS, analyse, assert_valid, cli_command

from mllm_mer.serving.vllm_server import free_port

pytestmark = pytest.mark.vllm


def test_analyse_endpoint_returns_labels_probabilities_and_frames(app_url, app_clip):
    from gradio_client import Client

    result = analyse(Client(app_url, verbose=False), app_clip)
    assert_valid(result)
    assert len(result[5]) == 4  # the sampled frames, shown as a strip


def test_twenty_concurrent_calls_all_get_valid_answers(app_url, app_clip):
    from gradio_client import Client

    def one(i):
        return analyse(Client(app_url, verbose=False), app_clip, transcript=f"Call number {i}, really?")

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(one, range(20)))
    assert len(results) == 20
    for result in results:
        assert_valid(result)


def test_agent_strategy_shows_its_steps_as_collapsible_tool_messages(app_url, app_clip):
    from gradio_client import Client

    client = Client(app_url, verbose=False)
    result = analyse(client, app_clip, strategy="agent")
    assert_valid(result)
    prediction = json.loads(Path(result[9]).read_text())
    trace = prediction["extras"]["agent"]["trace"]
    assert trace and trace[-1]["tool"] == "answer"
    tools = [step for step in trace if step["tool"] != "answer"]
    chat = result[10]
    titles = [(m.get("metadata") or {}).get("title", "") for m in chat]
    assert len(chat) == (len(tools) + 1 if tools else 0)
    assert all(t.startswith(f"step {s['step']}: {s['tool']}(") for t, s in zip(titles, tools, strict=False))
    # The chat goes on after the tool messages: they are not taken for turns.
    history, _ = client.predict("Why that label?", chat, api_name="/chat")
    assert len(history) == len(chat) + 2 and history[-1]["role"] == "assistant"


def test_chat_answers_a_follow_up_about_the_same_clip(app_url, app_clip):
    from gradio_client import Client

    client = Client(app_url, verbose=False)
    assert_valid(analyse(client, app_clip))
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


def test_corrupt_upload_is_a_readable_error_and_the_app_keeps_serving(app_url, app_clip, tmp_path):
    from gradio_client import Client

    bad = tmp_path / "broken.mp4"
    bad.write_bytes(os.urandom(5000))
    client = Client(app_url, verbose=False)
    summary = analyse(client, bad)[0]
    assert "Could not analyse" in summary and "not a readable media file" in summary
    assert "broken.mp4" in summary and "/tmp" not in summary and "gradio" not in summary  # the user's name only
    assert "Traceback" not in summary
    assert_valid(analyse(client, app_clip))


def test_wrong_upload_type_is_refused_without_a_traceback_in_the_log(app_url, tmp_path, capfd):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    text = tmp_path / "notes.txt"
    text.write_text("not a video")
    with pytest.raises(AppError, match="video must be one of"):
        analyse(Client(app_url, verbose=False), text)
    logged = capfd.readouterr()
    assert "Traceback" not in logged.err + logged.out  # the user's mistake, told on the page only


def test_batch_media_outside_the_upload_fails_alike_whether_or_not_it_exists(app_url, app_clip, tmp_path):
    import json

    from gradio_client import Client, handle_file

    rows = [("in", "Great news!", "joy", None), ("outside", "Get out.", "anger", str(app_clip)),
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
    assert str(app_clip.parent) not in str(failures) and "/tmp" not in str(failures)
    assert Path(archive).suffix == ".zip"


def test_batch_failure_reasons_name_the_users_own_paths(app_url, app_clip, tmp_path):
    import json
    import zipfile

    from gradio_client import Client, handle_file

    archive = tmp_path / "b.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(app_clip, "clips/c0.mp4")
        z.writestr("m.jsonl", json.dumps({"id": "s0", "text": "Fine.", "label": "neutral", "video": "clips/c0.mp4"})
                   + "\n" + json.dumps({"id": "s1", "text": "Oh.", "label": "joy", "video": "clips/gone.mp4"}) + "\n")
    _, _, _, status, failures = Client(app_url, verbose=False).predict(
        handle_file(str(archive)), "meld", "label_only", "emotion", None, None, api_name="/batch")
    assert "2 samples, 1 failed (media 1)" in status
    [[sample, kind, reason]] = failures["data"]
    assert (sample, kind) == ("s1", "media") and reason.startswith("clips/gone.mp4: ") and "app-runs" not in reason


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


def test_cli_app_on_transformers_is_up_at_once_saying_loading(tiny_model, tmp_path):
    """`mllm-mer app` as a user types it: the page answers while the model loads, then says ready."""
    import subprocess
    import time

    import httpx

    port = free_port()
    proc = subprocess.Popen(cli_command("app", "--model", tiny_model, "--backend", "transformers", "--port", port,
                                        "--runs-dir", tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # "At once" is shown by what the page says, not by a clock: its first answer comes while the model
        # is still loading. The deadline only keeps a hung launch from hanging the suite.
        deadline, config = time.monotonic() + 300, None
        while time.monotonic() < deadline and config is None and proc.poll() is None:
            try:
                config = httpx.get(f"http://127.0.0.1:{port}/config", timeout=1).text
            except httpx.HTTPError:
                time.sleep(0.2)
        assert config is not None, f"the page never answered (exit {proc.poll()})"
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


def test_conversation_endpoint_gives_the_timeline_table_and_details(app_url, app_talk):
    from gradio_client import Client, handle_file

    video, srt = app_talk
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
    headline = next(line for line in detail.splitlines() if f"**emotion: {rows[0][5]}**" in line)
    assert f"**emotion: {rows[0][5]}** ({shown[rows[0][5]]:.0%})" in headline
    assert rows[0][6] == pytest.approx(shown[rows[0][5]], abs=1e-3)
    assert (rows[0][7] == f"{top} ({shown[top]:.0%})" and f"most probable: {top}" in headline) \
        if top != rows[0][5] else (rows[0][7] == "" and "most probable" not in headline)


def test_conversation_with_a_broken_transcript_names_the_users_file(app_url, app_talk, tmp_path):
    from gradio_client import Client, handle_file

    video, _ = app_talk
    bad = tmp_path / "meeting.srt"
    bad.write_bytes("1\n00:00:00,000 --> 00:00:01,000\nCaf\xe9\n".encode("latin-1"))
    plot, table, report, detail, frames, rationale, probabilities = Client(app_url, verbose=False).predict(
        handle_file(str(video)), None, handle_file(str(bad)), "meld", "label_only", "predicted",
        api_name="/conversation")  # shown inline, as the Analyse tab shows its errors: no toast, no red badges
    assert detail.startswith("**Could not analyse the conversation:**") and "meeting.srt:3: not UTF-8" in detail
    assert plot is None and table["data"] in ([], [[]], [["", "", "", "", "", "", "", ""]]) and report is None
