"""`mllm-mer serve` as a user runs it, and the OpenAI client backend against it (one server per module)."""
import json
import os
import signal
import subprocess
import time

import httpx
import psutil
import pytest
from helpers import assert_same_answers, cli_command, described_run, random_samples, run_cli

from mllm_mer.config import BackendConfig, build
from mllm_mer.core.types import PromptSetup, Sample
from mllm_mer.pipeline import predict
from mllm_mer.serving.vllm_server import free_port

pytestmark = pytest.mark.vllm
KEY = "test-key-5b1f0c"  # passed to serve through the environment, never on a command line
AUTH = {"Authorization": f"Bearer {KEY}"}


class ServeProcess:
    def __init__(self, model, adapter, log, prompted=None):
        self.port = free_port()
        named = ["--adapter", f"cw={prompted}"] if prompted else []
        self.proc = subprocess.Popen(
            cli_command("serve", "--model", model, "--adapter", f"probe={adapter}", *named, "--engine-log", "--port",
                        self.port, "--enforce-eager", "--max-model-len", "4096", "--log-file", log,
                        "--max-num-seqs", "8"),  # not a flag of ours: passed through to vLLM's server
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "MLLM_MER_API_KEY": KEY})
        self.banner = ""
        deadline = time.monotonic() + 1200  # a condition awaited: a loaded machine only makes it later
        while time.monotonic() < deadline and "serving" not in self.banner:
            line = self.proc.stdout.readline()
            if not line and self.proc.poll() is not None:
                raise AssertionError(f"serve exited early:\n{self.banner}\n{log.read_text()[-3000:]}")
            self.banner += line
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log

    def stop(self) -> list[int]:
        """SIGTERM the command; return the pids of its process tree still alive afterwards."""
        if self.proc.poll() is not None:
            return []
        tree = [self.proc] + psutil.Process(self.proc.pid).children(recursive=True)
        tree_pids = [p.pid for p in tree]
        self.proc.send_signal(signal.SIGTERM)
        # Generous bounds, awaited conditions: serve's own stop waits longer on a loaded machine.
        self.proc.wait(timeout=1200)
        _, alive = psutil.wait_procs([p for p in tree if p.pid != self.proc.pid], timeout=300)
        return [p.pid for p in alive if p.pid in tree_pids]


WEATHER_LABELS = """name: weather4
tasks:
  - task: emotion
    labels: [sunny, rainy, foggy, stormy]
"""


@pytest.fixture(scope="module")
def prompted_adapter(tiny_lora, tmp_path_factory):
    """The probe adapter's weights with a saved prompt: a 4-label set of its own, and label_only."""
    import shutil

    import yaml

    folder = tmp_path_factory.mktemp("prompted") / "cw"
    shutil.copytree(tiny_lora, folder)
    (folder / "labels.yaml").write_text(WEATHER_LABELS)
    (folder / "prompt.yaml").write_text(yaml.safe_dump({"labels": "labels.yaml", "template": "label_only",
                                                        "modalities": ["text", "video"]}))
    return folder


@pytest.fixture(scope="module")
def server(tiny_model, tiny_lora, prompted_adapter, tmp_path_factory):
    handle = ServeProcess(tiny_model, tiny_lora, tmp_path_factory.mktemp("serve") / "server.log", prompted_adapter)
    yield handle
    for pid in handle.stop():
        psutil.Process(pid).kill()


@pytest.fixture(scope="module")
def client(server):
    from mllm_mer.backends.openai_client import OpenAIBackend

    backend = OpenAIBackend(build(BackendConfig, backend="openai", base_url=server.url, max_new_tokens=2048,
                                  api_key=KEY))
    yield backend
    backend.close()


def test_serves_on_loopback_and_prints_the_url(server):
    assert f"http://127.0.0.1:{server.port}/v1" in server.banner
    listening = {c.laddr.ip for c in psutil.net_connections("tcp") if c.laddr.port == server.port
                 and c.status == psutil.CONN_LISTEN}
    assert listening == {"127.0.0.1"}


def test_a_vllm_flag_we_do_not_define_reaches_the_server(server):
    """`mllm-mer serve ... --max-num-seqs 8`: read back from the server's own account of its settings."""
    started = next(line for line in server.log.read_text().splitlines() if "non-default args" in line)
    assert "'max_num_seqs': 8" in started


def test_models_endpoint_lists_base_and_adapter(server, tiny_model):
    ids = [m["id"] for m in httpx.get(f"{server.url}/v1/models", headers=AUTH, timeout=10).json()["data"]]
    assert tiny_model.name in ids and "probe" in ids


@pytest.mark.parametrize("adapter", [None, "probe"])
def test_video_chat_completion_returns_a_valid_prediction(client, meld_spec, adapter):
    clip = next(s for s in random_samples(4, seed=20) if s.frames)
    [pred] = predict(client, [clip], PromptSetup(meld_spec), adapter=adapter)
    assert pred.ok, (pred.error, pred.raw)
    assert pred.label("emotion") in meld_spec.task("emotion").labels
    assert pred.label("sentiment") in meld_spec.task("sentiment").labels
    assert abs(sum(pred.tasks["emotion"].probabilities.values()) - 1) < 1e-6


def test_every_schema_constrained_answer_is_json_a_standard_client_reads(client, meld_spec):
    """200 concurrent answers with free-text rationales, sampled: json.loads (strict, as the openai client's
    users call it) reads every one, and every free string holds its bound in the characters received. A
    `maxLength` string in the schema let raw control characters through; a malformed UTF-8 sequence the grammar
    took for one character arrived as three or four U+FFFD, past the bound."""
    from mllm_mer.prompting import CUE_MAX_CHARS, RATIONALE_MAX_CHARS, build_prompt

    prompts = [build_prompt(Sample(id=f"j{i}", transcript=s.transcript), meld_spec)
               for i, s in enumerate(random_samples(200, seed=31))]
    answers = [json.loads(raw) for raw in client.generate(prompts, temperature=1.0, seeds=range(200))]
    assert all(isinstance(answer, dict) for answer in answers)
    assert all("rationale" in a and "cues" in a for a in answers)
    over = [(a["rationale"], RATIONALE_MAX_CHARS) for a in answers if len(a["rationale"]) > RATIONALE_MAX_CHARS]
    over += [(cue, CUE_MAX_CHARS) for a in answers for cue in a["cues"].values() if len(cue) > CUE_MAX_CHARS]
    assert over == [] and not any("\ufffd" in json.dumps(a, ensure_ascii=False) for a in answers), over[:3]


def test_agent_over_the_server_ends_every_run_with_a_valid_answer(client, tiny_model, tmp_path):
    from helpers import MAX_STEPS, agent_setup, check_traces, varied_inputs

    from mllm_mer.conversation.context import dialogue_history
    from mllm_mer.stages.resources import Resources

    samples = varied_inputs(tmp_path)
    setup, agent = agent_setup(tiny_model)
    predictions = predict(client, samples, setup, strategy=agent,
                          resources=Resources(history=dialogue_history(samples)))
    check_traces(predictions, samples, setup, agent, MAX_STEPS)
    # The frames went out as image parts.
    assert any(s["tool"] == "look" for p in predictions for s in p.extras["agent"]["trace"])


def test_dialogue_command_over_the_server(server, tiny_model, tmp_path):
    from helpers import SRT

    transcript = tmp_path / "talk.srt"
    transcript.write_text(SRT)
    out = tmp_path / "timeline"
    done = run_cli("dialogue", "--backend", "openai", "--base-url", server.url, "--model", tiny_model, "--transcript",
                   transcript, "--out", out, "--template", "label_only", check=False,
                   env={**os.environ, "MLLM_MER_API_KEY": KEY})
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(x) for x in (out / "timeline.jsonl").read_text().splitlines()]
    assert [r["speaker"] for r in rows] == ["Ann", "Bob", "Ann"] and all(r["ok"] for r in rows)
    assert (out / "timeline.png").is_file() and (out / "timeline.md").is_file()


@pytest.mark.parametrize("strategy", [
    [], ["--strategy", "agent", "--max-steps", "2"], ["--reasoning", "before", "--max-reasoning-tokens", "8"],
    ["--mode", "score"]], ids=["single", "agent", "reasoning", "score"])
def test_cli_evaluate_over_the_server_continuous_equals_batched(server, tiny_model, tmp_path, strategy):
    """`evaluate --backend openai --concurrency 4` keeps 4 requests in flight and saves each answer as it comes
    (an agent's next step, the answer after a sample's reasoning, a label scoring: each when its sample's flow
    asks for it); the answers are those of 4-at-a-time batches."""
    manifest = tmp_path / "rows.jsonl"
    manifest.write_text("".join(json.dumps({"id": f"r{i}", "text": " ".join(["so", "what", "now"][: 1 + i % 3] * i),
                                            "label": "neutral"}) + "\n" for i in range(1, 13)))
    runs = {}
    for submission in ("continuous", "batched"):
        out = tmp_path / submission
        done = run_cli("evaluate", "--backend", "openai", "--base-url", server.url, "--model", tiny_model, "--dataset",
                       "manifest", "--data-dir", manifest, "--template", "label_only", "--concurrency", "4",
                       "--batch-size", "4", "--submission", submission, "--out", out, *strategy, check=False,
                       env={**os.environ, "MLLM_MER_API_KEY": KEY})
        assert done.returncode == 0, done.stderr[-3000:]
        runs[submission] = {json.loads(x)["id"]: json.loads(x)["prediction"]
                            for x in (out / "predictions.jsonl").read_text().splitlines()}
    assert len(runs["continuous"]) == 12 and all(p["ok"] for p in runs["continuous"].values())
    assert_same_answers(runs["continuous"], runs["batched"])


def test_requests_spread_over_several_base_urls(server, client, meld_spec):
    """`--base-url A --base-url B`: each answer goes to the least busy server (here two clients of one server,
    the same answers as one client); a server that is down among them is a clear error at start."""
    from mllm_mer.backends.openai_client import OpenAIBackend

    two = OpenAIBackend(build(BackendConfig, backend="openai", base_url=[server.url, f"{server.url}/v1"],
                              max_new_tokens=2048, api_key=KEY, concurrency=2))
    calls = [0, 0]
    for i, c in enumerate(two.clients):
        real = c.chat.completions.create

        def counted(*args, _real=real, _i=i, **kwargs):
            calls[_i] += 1
            return _real(*args, **kwargs)
        c.chat.completions.create = counted
    samples = [Sample(id=f"t{i}", transcript=" ".join(["so", "what", "now", "fine"][: 1 + i % 4])) for i in range(8)]
    setup = PromptSetup(meld_spec, template="label_only")
    got = predict(two, samples, setup, with_probabilities=False)
    two.close()
    assert min(calls) > 0 and sum(calls) == 8, calls
    assert [p.tasks for p in got] == [p.tasks for p in predict(client, samples, setup, with_probabilities=False)]
    with pytest.raises(ConnectionError, match="one of"):
        OpenAIBackend(build(BackendConfig, backend="openai", base_url=[server.url, f"http://127.0.0.1:{free_port()}"],
                            api_key=KEY, retries=0, timeout_s=5))


def assert_server_scores_match_the_engine(client, vllm_backend, meld_spec, transcript):
    samples = [Sample(id="t", transcript=transcript)]  # text only: identical inputs on both paths
    got = predict(client, samples, PromptSetup(meld_spec, mode="score"))[0]
    want = predict(vllm_backend, samples, PromptSetup(meld_spec, mode="score"))[0]
    for task, pred in want.tasks.items():
        for label, p in pred.probabilities.items():
            assert abs(got.tasks[task].probabilities[label] - p) < 1e-4


def test_a_video_prompt_scores_the_same_in_transformers_the_engine_and_over_the_server(
        client, vllm_backend, hf_backend, meld_spec, tmp_path):
    """The same frames reach all three (the server gets them losslessly, none re-sampled), so the same label
    probabilities come back (float32)."""
    from mllm_mer.core.types import MediaSettings
    from mllm_mer.synthetic.media import write_clip

    clip = write_clip(tmp_path / "clip.mp4", seconds=2.0, fps=10, size=(96, 64))
    samples = [Sample(id="v", video=str(clip), transcript="Oh no.")]
    setup = PromptSetup(meld_spec, mode="score", template="label_only", media=MediaSettings(max_frames=3))
    got = {b.name: predict(b, samples, setup)[0] for b in (hf_backend, vllm_backend, client)}
    assert all(p.ok for p in got.values()), got
    want = got.pop("transformers")
    for name, prediction in got.items():
        for task, tp in want.tasks.items():
            assert prediction.tasks[task].probabilities == pytest.approx(tp.probabilities, abs=1e-4), name


def test_label_scores_over_the_server_match_the_engine(client, vllm_backend, meld_spec):
    assert_server_scores_match_the_engine(client, vllm_backend, meld_spec, "You did WHAT?")


def test_reasoning_before_over_the_server_answers_as_the_engine(client, vllm_backend, meld_spec):
    """The reasoning block and the answer after it continue the assistant turn on the server as in the engine."""
    from dataclasses import replace

    from mllm_mer.core.families import PROMPTED_BLOCK

    samples = [Sample(id="r", transcript="You did WHAT?")]
    setup = PromptSetup(meld_spec, reasoning=replace(PROMPTED_BLOCK, max_tokens=12))
    got, want = predict(client, samples, setup)[0], predict(vllm_backend, samples, setup)[0]
    assert got.ok and got.reasoning == want.reasoning and got.raw == want.raw
    for task, tp in want.tasks.items():
        assert got.tasks[task].probabilities == pytest.approx(tp.probabilities, abs=1e-4)


def test_server_scoring_reads_only_branch_points(client, vllm_backend, meld_spec, monkeypatch):
    def whole_candidate(*_):
        raise AssertionError("fell back to whole-candidate prompt log-probabilities")

    monkeypatch.setattr(client, "_candidate_logprobs", whole_candidate)
    assert_server_scores_match_the_engine(client, vllm_backend, meld_spec, "Oh no, not again.")


def test_server_scoring_falls_back_when_a_branch_prefix_tokenises_differently(client, vllm_backend, meld_spec,
                                                                               monkeypatch):
    detokenize, candidate_logprobs, fallbacks = client._detokenize, client._candidate_logprobs, []
    monkeypatch.setattr(client, "_detokenize", lambda ids, model: detokenize(ids, model) + " ")
    monkeypatch.setattr(client, "_candidate_logprobs",
                        lambda *args: fallbacks.append(args) or candidate_logprobs(*args))
    assert_server_scores_match_the_engine(client, vllm_backend, meld_spec, "Fine. Whatever.")
    assert fallbacks


def test_cli_predict_over_the_server(server, face_png):
    import json

    proc = run_cli("predict", "--backend", "openai", "--base-url", server.url, "--adapter", "probe", "--image",
                   face_png, "--transcript", "Really?", "--max-new-tokens", "2048", check=False, timeout=300,
                   env={**os.environ, "MLLM_MER_API_KEY": KEY})
    assert proc.returncode == 0, proc.stderr
    pred = json.loads(proc.stdout)
    assert pred["ok"] and pred["tasks"]["emotion"]["label"] in {"neutral", "joy", "sadness", "anger", "surprise",
                                                                 "fear", "disgust"}


def test_an_adapter_named_over_the_server_answers_in_its_own_label_set(server, tmp_path):
    """`--adapter cw` (no directory here): the client asks the server for the adapter's prompt; an adapter the
    server cannot account for is refused in one line, never answered in another label set."""
    import json

    def predict_over(*flags):
        return run_cli("predict", "--backend", "openai", "--base-url", server.url, "--transcript", "It is rainy today.",
                       "--mode", "score", *flags, check=False, timeout=300,
                       env={**os.environ, "MLLM_MER_API_KEY": KEY, "MLLM_MER_CACHE": str(tmp_path)})
    named = predict_over("--adapter", "cw")
    assert named.returncode == 0, named.stderr
    assert set(json.loads(named.stdout)["tasks"]["emotion"]["probabilities"]) == {"sunny", "rainy", "foggy", "stormy"}
    unknown = predict_over("--adapter", "elsewhere")
    assert unknown.returncode == 2 and len(unknown.stderr.strip().splitlines()) == 1, unknown.stderr
    assert "does not say what prompt it was trained with" in unknown.stderr and "--adapter elsewhere=DIR" in \
        unknown.stderr
    table = httpx.get(f"{server.url}/v1/adapters/prompts", headers=AUTH, timeout=10).json()
    assert table["probe"] == {"prompt": None, "labels_yaml": None} and table["cw"]["labels_yaml"] == WEATHER_LABELS
    assert httpx.get(f"{server.url}/v1/adapters/prompts", timeout=10).status_code == 401


@pytest.mark.parametrize("method, route", [
    ("GET", "/v1/models"), ("POST", "/v1/chat/completions"), ("POST", "/invocations"), ("POST", "/tokenize"),
    ("POST", "/detokenize"), ("GET", "/metrics"), ("GET", "/docs"), ("GET", "/openapi.json"), ("GET", "/version"),
    ("GET", "/load"), ("GET", "/ping")])
def test_every_route_but_health_needs_the_key(server, method, route):
    assert httpx.request(method, f"{server.url}{route}", json={}, timeout=10).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert httpx.request(method, f"{server.url}{route}", json={}, headers=wrong, timeout=10).status_code == 401
    assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200


def test_no_process_shows_the_key_on_its_command_line(server):
    shown = [p.info["pid"] for p in psutil.process_iter(["pid", "cmdline"])
             if any(KEY in part for part in (p.info["cmdline"] or []))]
    assert shown == []


def _image_request(url: str, **extra) -> dict:
    return {"model": "probe", "max_tokens": 4, **extra, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "hi"}]}]}


def test_media_urls_are_refused_and_never_fetched(server, face_png):
    import base64
    import http.server
    import threading

    seen = []

    class Listener(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            seen.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(face_png.read_bytes())

        def log_message(self, *args):
            pass

    listener = http.server.HTTPServer(("127.0.0.1", 0), Listener)
    threading.Thread(target=listener.serve_forever, daemon=True).start()
    try:
        for url in (f"http://127.0.0.1:{listener.server_port}/face.png", "file:///etc/passwd"):
            answer = httpx.post(f"{server.url}/v1/chat/completions", json=_image_request(url), headers=AUTH,
                                timeout=30)
            assert answer.status_code == 400, answer.text
            assert "data: URLs" in answer.text
        assert seen == []
    finally:
        listener.shutdown()
    inline = "data:image/png;base64," + base64.b64encode(face_png.read_bytes()).decode()
    assert httpx.post(f"{server.url}/v1/chat/completions", json=_image_request(inline), headers=AUTH,
                      timeout=120).status_code == 200
    too_many = httpx.post(f"{server.url}/v1/chat/completions", json=_image_request(inline, n=50), headers=AUTH,
                          timeout=30)
    assert too_many.status_code == 400 and "n is at most" in too_many.text


def test_a_clients_plain_string_schema_gets_strict_json_in_100_concurrent_answers(server):
    """The server keeps any client's free strings valid JSON (no raw control character reaches the client)."""
    from concurrent.futures import ThreadPoolExecutor

    schema = {"type": "json_schema", "json_schema": {"name": "s", "schema": {"type": "string", "maxLength": 200}}}

    def one(i):
        body = {"model": "probe", "max_tokens": 300, "temperature": 1.0, "seed": i, "response_format": schema,
                "messages": [{"role": "user", "content": f"Say anything {i}"}]}
        reply = httpx.post(f"{server.url}/v1/chat/completions", json=body, headers=AUTH, timeout=300)
        assert reply.status_code == 200, reply.text
        return reply.json()["choices"][0]["message"]["content"]

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(one, range(100)))
    strict = [a for a in answers if isinstance(_strict(a), str)]
    assert len(strict) == 100, [a for a in answers if a not in strict][:3]
    # The bound counts what the client receives: no malformed UTF-8 arrives as U+FFFD past it.
    assert [len(s) for s in map(_strict, answers) if len(s) > 200 or "\ufffd" in s] == []


def _strict(text):
    import json

    try:
        return json.loads(text)  # strict: a raw control character inside a string fails here
    except json.JSONDecodeError:
        return None


def test_cli_predict_against_a_down_server_prints_no_traceback():
    url = f"http://127.0.0.1:{free_port()}"
    proc = run_cli("predict", "--backend", "openai", "--base-url", url, "--transcript", "hi", check=False, timeout=120)
    assert proc.returncode == 2 and url in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("mode", ["generate", "score"])
def test_over_the_server_the_label_is_the_most_probable_of_its_own_distribution(client, meld_spec, mode):
    preds = predict(client, random_samples(12, seed=11), PromptSetup(meld_spec, template="label_only", mode=mode))
    scored = [(tp.label, tp.probabilities) for p in preds if p.ok for tp in p.tasks.values() if tp.probabilities]
    assert len(scored) >= 12
    assert all(label == max(probs, key=probs.get) for label, probs in scored), scored


def test_a_served_model_judges_through_the_openai_backend_named_by_its_model_card(server, tiny_model, tmp_path):
    import json

    runs = [described_run(tmp_path / "warm", [("joy", "She smiles and laughs."), ("joy", "A grin.")]),
            described_run(tmp_path / "cold", [("sadness", "Nothing shows."), ("anger", "Loud.")])]
    command = ["compare", *runs, "--judge-model", tiny_model.name, "--judge-backend", "openai", "--judge-base-url",
               server.url, "--out", tmp_path / "pref"]
    asked = []
    for _ in range(2):
        run_cli(*command, timeout=300, env={**os.environ, "MLLM_MER_API_KEY": KEY})
        result = json.loads((tmp_path / "pref" / "preference.json").read_text())
        asked.append(result["judge"]["verdicts_asked"])
    assert asked == [4, 0]  # 2 clips x 2 orders, then all from the cache
    judge = result["judge"]
    assert judge["backend"] == "openai" and judge["server_model_card"]["id"] == tiny_model.name
    assert result["verdicts"] + result["unjudged"] == 4 and set(result["ranking"]) == {"warm", "cold"}


def test_stopping_serve_leaves_no_orphan_and_no_leak_warnings(server):
    # Last in this module: the server goes away here (the fixture's own stop is then a no-op).
    assert server.stop() == []
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{server.url}/health", timeout=3)
    said = server.proc.stdout.read() + server.log.read_text()
    # The engine stops in order: nothing killed mid-teardown, no shared memory left to the resource tracker,
    # no compiler bindings torn down under live objects.
    for noise in ("force killing", "resource_tracker", "leaked", "nanobind"):
        assert noise not in said, said[-3000:]

