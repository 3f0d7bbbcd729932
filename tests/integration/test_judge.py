"""The pinned judge on the tiny model: verdicts under the task's schema, an identity that names the
model files and prompt files, a content cache (a rescoring makes no call), and a kill -9 mid-run that
resumes with every verdict once."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from helpers import described_run

from mllm_mer.evaluation.judge import Judge
from mllm_mer.evaluation.judge_identity import judge_identity, same_judge

WORDS = [["happy", "joyful", "worried"], ["angry", "furious"], ["sad", "calm", "tired", "lonely"]]


def _check_groups(verdicts):
    for words, verdict in zip(WORDS, verdicts, strict=True):
        grouped = [w for group in verdict["groups"] for w in group]
        assert grouped and set(grouped) <= set(words)  # the schema holds the judge to the given words


def test_the_judge_answers_under_its_schema_records_who_it_is_and_caches_by_content(hf_backend, tiny_model,
                                                                                   tmp_path):
    identity = judge_identity(str(tiny_model), "transformers")
    assert len(identity["files_sha256"]) == 64 and set(identity["prompts"]) >= {"synonyms", "reference"}
    cache = tmp_path / "verdicts.jsonl"
    judge = Judge(hf_backend, identity, cache)
    first = judge.ask("synonyms", [{"words": w} for w in WORDS])
    _check_groups(first)
    rated = judge.ask("reference", [{"description": "She smiles and sounds relieved.",
                                     "reference": "A relieved smile; her voice relaxes."}])[0]
    assert 0 <= rated["clue_overlap"] <= 10 and 0 <= rated["label_overlap"] <= 10
    assert judge.calls == 4
    again = Judge(hf_backend, identity, cache)  # a second scoring of the same inputs
    assert again.ask("synonyms", [{"words": w} for w in WORDS]) == first
    assert again.calls == 0
    other = judge_identity(str(tiny_model), "vllm")
    assert not same_judge([identity, other]) and same_judge([identity, dict(identity)])


@pytest.mark.vllm
def test_the_engine_judges_as_transformers_does(hf_backend, vllm_backend, tiny_model, tmp_path):
    items = [{"words": w} for w in WORDS]
    by_hf = Judge(hf_backend, judge_identity(str(tiny_model), "transformers")).ask("synonyms", items)
    by_engine = Judge(vllm_backend, judge_identity(str(tiny_model), "vllm")).ask("synonyms", items)
    assert by_engine == by_hf  # float32, greedy: the same verdicts


SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path
    from mllm_mer.backends.hf import TransformersBackend
    from mllm_mer.config import BackendConfig, build
    from mllm_mer.evaluation.judge import Judge
    from mllm_mer.evaluation.judge_identity import judge_identity

    model, cache = sys.argv[1], Path(sys.argv[2])
    backend = TransformersBackend(build(BackendConfig, model=model, dtype="float32", max_new_tokens=256))
    items = [{"words": [f"w{i}", f"v{i}", "happy"]} for i in range(64)]
    judge = Judge(backend, judge_identity(model, "transformers"), cache)
    judge.ask("synonyms", items)
    print("asked", judge.calls, flush=True)
""")


def test_a_judging_run_killed_mid_way_resumes_with_every_verdict_once(tiny_model, tmp_path):
    cache = tmp_path / "verdicts.jsonl"
    script = tmp_path / "judging.py"
    script.write_text(SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(tiny_model), str(cache)], stdout=subprocess.PIPE,
                            text=True, start_new_session=True)
    while proc.poll() is None and not (cache.is_file() and cache.read_text().count("\n") >= 16):
        time.sleep(0.2)  # a condition, not a clock: wait until the first batch is saved
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    saved_before = cache.read_text().count("\n")
    assert saved_before >= 16
    done = subprocess.run([sys.executable, str(script), str(tiny_model), str(cache)], capture_output=True,
                          text=True, check=True, timeout=600)
    asked = int(done.stdout.split()[-1])
    keys = [json.loads(line)["key"] for line in cache.read_text().splitlines()]
    assert len(keys) == len(set(keys)) == 64  # every verdict once
    assert asked == 64 - saved_before  # the resumed run asked only what was not saved


def test_score_groups_open_answers_with_the_judge_names_it_and_asks_nothing_twice(tiny_model, tmp_path):
    from mllm_mer.cli import main

    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps({"id": f"s{i}", "text": "...", "label": gold}) + "\n"
                                for i, gold in enumerate(["['happy', 'relieved']", "['angry']", "['sad']"])))
    answers = tmp_path / "answers.csv"
    answers.write_text("id,pred\ns0,\"['joyful']\"\ns1,\"furious, annoyed\"\ns2,sad\n")
    command = ["score", str(answers), "--dataset", "manifest", "--data-dir", str(manifest), "--labels", "open",
               "--judge-model", str(tiny_model), "--out", str(tmp_path / "run")]
    asked = []
    for _ in range(2):
        assert main(command) == 0
        metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
        asked.append(metrics["judge"]["verdicts_asked"])
    grouped = metrics["tasks"]["emotion"]["synonym_groups"]
    assert grouped["groups_from"] == f"judge {metrics['judge']['id']}" and grouped["grouped"] == 3
    assert metrics["judge"]["model"] == str(tiny_model) and len(metrics["judge"]["files_sha256"]) == 64
    assert json.loads((tmp_path / "run" / "run.json").read_text())["fingerprint"]["judge"] == metrics["judge"]["id"]
    assert asked == [3, 0]  # the second scoring is served from the run's verdict cache


def test_descriptions_are_rated_against_reference_descriptions_by_the_named_judge(tiny_model, tmp_path):
    from mllm_mer.cli import main

    manifest = tmp_path / "manifest.jsonl"
    references = ["A broad smile; her voice lifts with relief.", "He shouts, jaw tight: anger.", ""]
    manifest.write_text("".join(json.dumps({"id": f"s{i}", "text": "...", "label": "['joy']", "reference": ref})
                                + "\n" for i, ref in enumerate(references)))
    answers = tmp_path / "answers.jsonl"
    answers.write_text("".join(json.dumps({"id": f"s{i}", "description": d}) + "\n" for i, d in enumerate(
        ["She smiles, relieved.", "He is calm and quiet.", "She looks happy."])))
    base = ["score", str(answers), "--dataset", "manifest", "--data-dir", str(manifest), "--labels", "open",
            "--pred-text-col", "description", "--out", str(tmp_path / "run")]
    assert main([*base, "--reference-col", "reference", "--judge-model", str(tiny_model)]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    rated = metrics["against_reference"]
    assert rated["n"] + rated["unrated"] == 2  # the sample without a reference is not rated
    for key in ("clue_overlap", "label_overlap"):
        assert 0 <= rated[key] <= 10 and rated["intervals"][key][0] <= rated[key] <= rated["intervals"][key][1]
    assert metrics["judge"]["model"] == str(tiny_model)
    assert main([*base, "--reference-col", "nope", "--judge-model", str(tiny_model)]) == 2


def test_compare_ranks_runs_by_the_judges_pairwise_preference_and_asks_nothing_twice(tiny_model, tmp_path, capfd):
    from mllm_mer.cli import main

    runs = [described_run(tmp_path / "smiles", [("joy", "She smiles broadly and laughs."), ("joy", "A bright grin.")]),
            described_run(tmp_path / "flat", [("sadness", "Nothing is visible."), ("anger", "Loud.")]),
            described_run(tmp_path / "terse", [("joy", "Happy."), ("surprise", "Eyes wide open.")])]
    command = ["compare", *map(str, runs), "--judge-model", str(tiny_model), "--out", str(tmp_path / "pref")]
    asked = []
    for _ in range(2):
        assert main(command) == 0
        out = capfd.readouterr().out
        result = json.loads((tmp_path / "pref" / "preference.json").read_text())
        asked.append(result["judge"]["verdicts_asked"])
    assert asked == [12, 0]  # 3 pairs of runs x 2 clips x 2 orders; the second run is served from the cache
    assert set(result["ranking"]) == {"smiles", "flat", "terse"}
    assert result["verdicts"] + result["unjudged"] == 12 and 0 <= result["position_bias"] <= 1
    assert result["judge"]["model"] == str(tiny_model) and len(result["judge"]["files_sha256"]) == 64
    for name in ("smiles", "flat", "terse"):
        assert f"| {name} |" in out
    assert "position bias:" in out and "verdicts asked of it: 0" in out
    pairs = tmp_path / "pairs.jsonl"
    human = [("She smiles.", "Nothing.", "A"), ("Flat voice.", "A warm laugh and a grin.", "B")]
    pairs.write_text("".join(json.dumps({"description_a": a, "description_b": b, "preferred": p}) + "\n"
                             for a, b, p in human))
    assert main(["compare", "--preference-pairs", str(pairs), "--judge-model", str(tiny_model)]) == 0
    out = capfd.readouterr().out
    assert "Agreement with human preferences" in out and "| 2 |" in out
    # one-line refusals: a missing column, a judge that cannot load
    pairs.write_text(json.dumps({"description_a": "x", "description_b": "y", "winner": "A"}) + "\n")
    assert main(["compare", "--preference-pairs", str(pairs), "--judge-model", str(tiny_model)]) == 2
    assert "no column preferred" in capfd.readouterr().err
    assert main(["compare", *map(str, runs[:2]), "--judge-model", str(tmp_path / "no-model")]) == 2
    [line] = capfd.readouterr().err.strip().splitlines()
    assert "the judge cannot load" in line
