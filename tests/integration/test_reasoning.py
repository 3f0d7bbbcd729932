"""Reasoning before the answer (`--reasoning before|native`) on the tiny thinking checkpoint: the same
reasoning, answer and label probabilities on transformers and the vLLM engine; the grammar never inside
the think block; a cut block still answered; the order in the run's identity; one-line errors."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest

from mllm_mer.core.families import PROMPTED_BLOCK, QWEN_THINK
from mllm_mer.core.types import PromptSetup, Sample
from mllm_mer.pipeline.answer import predict
from tests.helpers import run_cli

SAMPLES = [Sample(id="a", transcript="You did WHAT? I told you not to touch it!"),
           Sample(id="b", transcript="Oh, that's wonderful news, thank you."),
           Sample(id="c", transcript="I don't know. Maybe.")]


@pytest.fixture(scope="module")
def thinking_model(tmp_path_factory):
    from mllm_mer.synthetic.tiny import make_tiny

    return make_tiny(tmp_path_factory.mktemp("models") / "tiny-thinking", thinking=True)


@pytest.fixture(scope="module")
def thinking_backends(thinking_model):
    """transformers and the vLLM engine on the thinking checkpoint (float32: exact parity)."""
    from mllm_mer.backends.hf import TransformersBackend
    from mllm_mer.backends.vllm_engine import VLLMEngineBackend
    from mllm_mer.config import BackendConfig, build

    common = dict(model=str(thinking_model), dtype="float32", max_new_tokens=512)
    with TransformersBackend(build(BackendConfig, **common, forward_batch_size=8)) as hf, \
            VLLMEngineBackend(build(BackendConfig, **common, enforce_eager=True, max_model_len=4096,
                                    kv_cache_gb=1)) as engine:
        yield hf, engine


def _setup(meld_spec, block, mode="generate", max_tokens=24) -> PromptSetup:
    return PromptSetup(meld_spec, mode=mode, reasoning=replace(block, max_tokens=max_tokens))


@pytest.mark.parametrize("block", [QWEN_THINK, PROMPTED_BLOCK], ids=["native", "before"])
def test_reasoning_answer_and_probabilities_agree_between_transformers_and_the_engine(
        thinking_backends, meld_spec, block):
    hf, engine = thinking_backends
    setup = _setup(meld_spec, block)
    got = {b.name: predict(b, SAMPLES, setup) for b in (hf, engine)}
    for want, have in zip(got["transformers"], got["vllm"], strict=True):
        assert want.ok and have.ok, (want, have)
        assert want.reasoning == have.reasoning  # the same tokens: text, count and where it stopped
        assert want.reasoning["order"] == block.order and want.reasoning["tokens"] <= 24
        assert want.raw == have.raw  # the answer generated after it
        for task, tp in want.tasks.items():
            assert have.tasks[task].label == tp.label
            assert have.tasks[task].probabilities == pytest.approx(tp.probabilities, abs=1e-4)


def test_the_grammar_never_reaches_inside_the_think_block(thinking_backends, meld_spec):
    """The answer grammar allows only `{` first; the think block opens with what the model chose."""
    _, engine = thinking_backends
    predictions = predict(engine, SAMPLES, _setup(meld_spec, QWEN_THINK, max_tokens=16))
    openings = [p.reasoning["text"][:1] for p in predictions]
    assert all(p.ok for p in predictions)
    assert any(first not in ("{", "") for first in openings), openings
    assert all(json.loads(p.raw)["emotion"] for p in predictions)  # the answer after it is schema-valid


def test_probabilities_are_read_after_the_reasoning(thinking_backends, meld_spec):
    """Scoring after the model's own reasoning gives another distribution than scoring the answer first."""
    _, engine = thinking_backends
    first = predict(engine, SAMPLES[:1], PromptSetup(meld_spec, mode="score"))[0]
    after = predict(engine, SAMPLES[:1], _setup(meld_spec, QWEN_THINK, mode="score"))[0]
    assert after.reasoning and after.reasoning["tokens"] > 0
    assert after.tasks["emotion"].probabilities != pytest.approx(first.tasks["emotion"].probabilities, abs=1e-3)


def test_a_cut_reasoning_still_answers_with_a_note(thinking_backends, meld_spec):
    hf, _ = thinking_backends
    [prediction] = predict(hf, SAMPLES[:1], _setup(meld_spec, PROMPTED_BLOCK, max_tokens=3))
    assert prediction.ok and prediction.reasoning["cut"] and prediction.reasoning["tokens"] == 3
    assert any("--max-reasoning-tokens" in note for note in prediction.notes)


def test_native_reasoning_on_a_model_without_a_think_block_is_one_line(tiny_model):
    result = run_cli("predict", "--model", str(tiny_model), "--transcript", "hi", "--reasoning", "native", check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "has no think block" in result.stderr and "--reasoning before" in result.stderr


def test_evaluate_records_the_order_and_a_new_order_is_a_new_run(thinking_model, tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({"id": s.id, "text": s.transcript, "label": "anger"}) + "\n"
                                for s in SAMPLES))
    base = ["evaluate", "--dataset", "manifest", "--data-dir", str(manifest), "--model", str(thinking_model),
            "--labels", "meld", "--max-reasoning-tokens", "8", "--dtype", "float32"]
    runs = {}
    for order in ("before", "native"):
        out = tmp_path / order
        result = run_cli(*base, "--reasoning", order, "--out", str(out), check=False)
        assert result.returncode == 0, result.stderr[-2000:]
        records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
        assert all(r["prediction"]["reasoning"]["order"] == order for r in records)
        runs[order] = json.loads((out / "run.json").read_text())
    assert runs["before"]["fingerprint"]["prompt"]["reasoning"] == {"order": "before", "max_tokens": 8}
    again = run_cli(*base, "--reasoning", "native", "--out", str(tmp_path / "before"), check=False)
    assert again.returncode == 2 and "other settings (prompt)" in again.stderr


def _records(out) -> list[dict]:
    return [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]


def test_compare_orders_scores_the_label_first_answer_beside_the_reasoned_one(thinking_model, tmp_path):
    """One run, both orders: the label-first distribution is what a --reasoning none run scores, and the
    counts in metrics.json and the summary are those the records give; the option is part of the identity."""
    gold = ["anger", "joy", "neutral", "sadness", "anger", "surprise"]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({"id": f"s{i}", "text": f"{SAMPLES[i % 3].transcript} ({i})",
                                            "label": g}) + "\n" for i, g in enumerate(gold)))
    base = ["evaluate", "--dataset", "manifest", "--data-dir", str(manifest), "--model", str(thinking_model),
            "--labels", "meld", "--dtype", "float32", "--mode", "score"]
    both = [*base, "--reasoning", "before", "--max-reasoning-tokens", "8", "--compare-orders"]
    result = run_cli(*both, "--out", str(tmp_path / "both"))
    records = _records(tmp_path / "both")
    plain = {r["id"]: r["prediction"]["tasks"]["emotion"] for r in _records(_plain_run(base, tmp_path))}
    changed = right = 0
    for record in records:
        first = record["prediction"]["reasoning"]["label_first"]["emotion"]
        reasoned = record["prediction"]["tasks"]["emotion"]
        assert first["probabilities"] == pytest.approx(plain[record["id"]]["probabilities"], abs=1e-4)
        assert first["label"] == plain[record["id"]]["label"]
        changed += first["label"] != reasoned["label"]
        right += first["label"] != reasoned["label"] and reasoned["label"] == record["gold"]["emotion"]
    stats = json.loads((tmp_path / "both" / "metrics.json").read_text())["orders"]
    m = stats["tasks"]["emotion"]
    assert stats["order"] == "before" and m["n"] == len(gold) and (m["changed"], m["changed_to_right"]) == (changed,
                                                                                                            right)
    assert m["accuracy"]["reasoned"] == json.loads((tmp_path / "both" / "metrics.json").read_text()
                                                   )["tasks"]["emotion"]["accuracy"]
    assert m["accuracy"]["label_first"] == sum(plain[r["id"]]["label"] == r["gold"]["emotion"]
                                               for r in records) / len(gold)
    assert m["ece"]["n_scored"] == len(gold) and m["ece"]["label_first"] is not None
    assert f"changed {changed} of {len(gold)} labels" in result.stdout
    assert "Answer orders on the same samples" in (tmp_path / "both" / "report.md").read_text()
    run_cli(*both, "--out", str(tmp_path / "both"))  # resumes: nothing left to answer
    assert _records(tmp_path / "both") == records
    other = run_cli(*base, "--reasoning", "before", "--max-reasoning-tokens", "8", "--out", str(tmp_path / "both"),
                    check=False)
    assert other.returncode == 2 and "other settings (compare_orders)" in other.stderr
    alone = run_cli(*base, "--compare-orders", "--out", str(tmp_path / "alone"), check=False)
    assert alone.returncode == 2 and "Traceback" not in alone.stderr and "--reasoning before" in alone.stderr


def _plain_run(base: list[str], tmp_path):
    run_cli(*base, "--reasoning", "none", "--out", str(tmp_path / "none"))
    return tmp_path / "none"
