"""vLLM engine backend on the tiny checkpoint (one engine per session): parity, schema, batching, LoRA."""
import json
import math

import pytest
from helpers import random_samples

from mllm_mer.core.types import PromptSetup
from mllm_mer.pipeline import predict, prepare

pytestmark = pytest.mark.vllm


@pytest.fixture(scope="module")
def hf_lora_backend(tiny_model, tiny_lora):
    from mllm_mer.backends.hf import TransformersBackend
    from mllm_mer.config import BackendConfig, build

    backend = TransformersBackend(build(BackendConfig, model=str(tiny_model), adapter=[f"probe={tiny_lora}"],
                                                dtype="float32"))
    yield backend
    backend.close()


def _prompts(samples, spec, template="zero_shot"):
    return [p.prompt for p in prepare(samples, PromptSetup(spec, template=template))]


@pytest.mark.parametrize("adapter", [None, "probe"])
def test_greedy_tokens_match_transformers_for_images_and_frames(vllm_backend, hf_lora_backend, meld_spec, adapter):
    samples = random_samples(4, seed=10)  # stills and frame clips alternate
    prompts = _prompts(samples, meld_spec)
    assert {bool(p.images) for p in prompts} == {True, False} and any(p.videos for p in prompts)
    expected = hf_lora_backend.generate_token_ids(prompts, adapter=adapter, max_new_tokens=24)
    got = vllm_backend.generate_token_ids(prompts, adapter=adapter, max_new_tokens=24)
    assert got == expected


def test_answers_open_in_the_prompt_and_match_transformers(vllm_backend, hf_lora_backend, meld_spec):
    """The answer's forced opening is prefilled, not decoded: the engine writes only the rest, under its grammar,
    and the answer handed back is whole; transformers does the same and answers alike."""
    prompts = _prompts(random_samples(4, seed=12), meld_spec, template="label_only")
    request, params, opening = vllm_backend._answer(prompts[0])
    assert opening == '{"emotion":"' and request["prompt"].endswith(opening) and params.structured_outputs.grammar
    written = vllm_backend._generate([request], [params])[0].outputs[0].text
    answers = vllm_backend.generate(prompts)
    assert not written.startswith("{") and answers[0] == opening + written
    assert answers == hf_lora_backend.generate(prompts)
    for answer in answers:
        labels = json.loads(answer)
        assert labels["emotion"] in meld_spec.label_sets[0].labels and set(labels) == {"emotion", "sentiment"}


def test_adapter_changes_the_output(vllm_backend, meld_spec):
    prompts = _prompts(random_samples(2, seed=11), meld_spec)
    base = vllm_backend.generate_token_ids(prompts, max_new_tokens=24)
    tuned = vllm_backend.generate_token_ids(prompts, adapter="probe", max_new_tokens=24)
    assert base != tuned


def test_fifty_structured_answers_all_parse_into_the_label_set(vllm_backend, meld_spec):
    samples = random_samples(50, seed=12)
    preds = predict(vllm_backend, samples, PromptSetup(meld_spec), with_probabilities=False)
    for pred in preds:
        assert pred.ok, (pred.error, pred.raw)
        assert pred.label("emotion") in meld_spec.task("emotion").labels
        assert pred.label("sentiment") in meld_spec.task("sentiment").labels
        assert isinstance(pred.rationale, str)


def test_a_batch_of_32_comes_back_complete_and_in_order(vllm_backend, meld_spec):
    samples = random_samples(32, seed=13)
    cfg = PromptSetup(meld_spec, template="label_only")
    preds = predict(vllm_backend, samples, cfg, with_probabilities=False)
    assert [p.sample_id for p in preds] == [s.id for s in samples]
    for i in (0, 17, 31):  # each answer belongs to its own sample
        [alone] = predict(vllm_backend, [samples[i]], cfg, with_probabilities=False)
        assert alone.raw == preds[i].raw


def test_label_scores_match_transformers(vllm_backend, hf_lora_backend, meld_spec):
    samples = random_samples(2, seed=14)
    for adapter in (None, "probe"):
        got = predict(vllm_backend, samples, PromptSetup(meld_spec, mode="score"), adapter=adapter)
        want = predict(hf_lora_backend, samples, PromptSetup(meld_spec, mode="score"), adapter=adapter)
        for g, w in zip(got, want, strict=True):
            assert g.ok and {t: p.label for t, p in g.tasks.items()} == {t: p.label for t, p in w.tasks.items()}
            for task, pred in g.tasks.items():
                assert math.isclose(sum(pred.probabilities.values()), 1.0, rel_tol=1e-6)
                for label, p in pred.probabilities.items():
                    assert math.isclose(p, w.tasks[task].probabilities[label], rel_tol=1e-3, abs_tol=1e-5)


def test_backend_scores_are_a_distribution_over_the_candidates(vllm_backend, meld_spec):
    [prepared] = prepare(random_samples(1, seed=15), PromptSetup(meld_spec, mode="score"))
    labels = meld_spec.label_sets[0].labels
    [logps] = vllm_backend.score([(prepared.prompt, ['{"emotion":"' + label + '"' for label in labels])])
    assert len(logps) == len(labels) and all(v <= 0 for v in logps)
    assert math.isclose(sum(math.exp(v) for v in logps), 1.0, rel_tol=1e-6)


def test_unknown_adapter_is_a_clear_error(vllm_backend, meld_spec):
    with pytest.raises(ValueError, match="unknown adapter 'nope'"):
        vllm_backend.generate(_prompts(random_samples(1), meld_spec), adapter="nope")
