"""Hardening where a user or an attacker meets it: the CLI and a running app given a file nested deep
enough to crash a parser, and wrong logins against a running app with a login."""
import os
import subprocess
import sys
import threading
import time

import httpx
import pytest

from mllm_mer.serving.vllm_server import free_port

DEEP_ROW = '{"a":' * 10_000 + "1" + "}" * 10_000  # 9,000+ levels crashed pyarrow's JSON reader (SIGSEGV)


def _deep_manifest(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"id": "a", "text": "hi", "label": "joy"}\n' + DEEP_ROW + "\n")
    return path


@pytest.mark.parametrize("verb", ["inspect", "evaluate"])
def test_a_manifest_nested_10000_deep_is_a_one_line_error_not_a_crash(verb, tmp_path):
    manifest = _deep_manifest(tmp_path)
    extra = ["--model", str(tmp_path / "never-loaded"), "--out", str(tmp_path / "run")] if verb == "evaluate" else []
    proc = subprocess.run([sys.executable, "-m", "mllm_mer.cli", verb, "--dataset", "manifest", "--data-dir",
                           str(manifest), *extra], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert proc.stderr.strip().splitlines() == [f"mllm-mer {verb}: error: {manifest}:2: nested more than 100 levels "
                                                "deep (refused before parsing)"]


@pytest.fixture(scope="module")
def app_with_login(tiny_model, tmp_path_factory):
    """`mllm-mer app` as an operator starts it, with a login (from the environment, as documented)."""
    port = free_port()
    runs = tmp_path_factory.mktemp("runs")
    env = {**os.environ, "MLLM_MER_APP_AUTH": "ann:secret"}
    proc = subprocess.Popen([sys.executable, "-m", "mllm_mer.cli", "app", "--model", str(tiny_model), "--backend",
                             "transformers", "--port", str(port), "--runs-dir", str(runs)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/config", timeout=2)
            break
        except httpx.HTTPError:
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.3)
    yield url, proc, runs
    proc.terminate()
    proc.wait(timeout=60)


def _login(url, password, address="127.0.0.1"):
    client = httpx.Client(base_url=url, transport=httpx.HTTPTransport(local_address=address), timeout=30)
    reply = client.post("/login/", data={"username": "ann", "password": password})
    return client, reply.status_code


def test_wrong_logins_from_many_addresses_leave_the_app_serving_its_user(app_with_login):
    url, proc, _ = app_with_login
    owner, status = _login(url, "secret")
    assert status == 200
    statuses, done = [], threading.Event()

    def guess(i):
        statuses.append(_login(url, f"guess{i}", f"127.0.0.{2 + i % 4}")[1])
        if len(statuses) == 12:
            done.set()

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    pages = [owner.get("/config").status_code for _ in range(3)]  # the logged-in user, meanwhile
    for thread in threads:
        thread.join()
    assert done.is_set() and statuses == [400] * 12  # every guess refused
    assert pages == [200] * 3
    assert _login(url, "secret")[1] == 200  # the owner's own address gets a fresh session at once
    assert proc.poll() is None


def test_a_batch_upload_nested_10000_deep_is_refused_and_the_app_stays_up(app_with_login, tmp_path):
    from gradio_client import Client, handle_file

    url, proc, _ = app_with_login
    client = Client(url + "/", auth=("ann", "secret"), verbose=False)
    with pytest.raises(Exception, match=r"manifest.jsonl:2: nested more than 100 levels deep") as refused:
        # As the Batch tab sends it: upload, label set, template, task, limit, folder, adapter, mode,
        # modalities, then the column chosen for each role.
        client.predict(handle_file(str(_deep_manifest(tmp_path))), "meld", "zero_shot", "emotion", "", None,
                       "(base model)", "generate", ["text"], "id", "text", "label", "(none)", "(none)", "(none)",
                       api_name="/batch")
    assert "Traceback" not in str(refused.value) and len(str(refused.value).strip().splitlines()) == 1
    assert proc.poll() is None  # the app process is alive (the upload was read in a child process)
    owner, _ = _login(url, "secret")
    assert owner.get("/config").status_code == 200


def test_session_routes_need_the_login_too(app_with_login):
    url, _, _ = app_with_login
    for path in ("/gradio_api/heartbeat/abc123", "/gradio_api/startup-events"):
        assert httpx.get(url + path, timeout=10).status_code == 401, path
    owner, _ = _login(url, "secret")
    assert owner.get("/gradio_api/startup-events").status_code == 200  # the page's own call, logged in


def test_a_batch_zip_is_not_kept_unpacked_after_its_run(app_with_login, tmp_path):
    import zipfile

    from gradio_client import Client, handle_file

    url, _, runs = app_with_login
    upload = tmp_path / "batch.zip"
    with zipfile.ZipFile(upload, "w") as z:
        z.writestr("data/m.csv", "id,text,label\na,I am so happy today,joy\n")
    client = Client(url + "/", auth=("ann", "secret"), verbose=False)
    result = client.predict(handle_file(str(upload)), "meld", "zero_shot", "emotion", "", None, "(base model)",
                            "generate", ["text"], "id", "text", "label", "(none)", "(none)", "(none)",
                            api_name="/batch")
    assert result[2]  # the run's zip came back
    [run] = [p for p in runs.iterdir() if (p / "run" / "predictions.jsonl").is_file()]  # the one answered
    assert not (run / "input").exists()
