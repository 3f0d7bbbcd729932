"""The app's pure logic: the adapter a batch run answers with (login throttling: test_hardening)."""
import pytest


def test_a_batch_run_answers_with_the_adapter_chosen_or_the_base_model():
    from mllm_mer.app.service import batch_model
    from mllm_mer.config import ModelConfig

    model = ModelConfig(model="m", adapter=["a=/runs/a", "b=/runs/b"])
    assert batch_model(model, "b").adapters == {"b": "/runs/b", "a": "/runs/a"}  # a run answers with its first
    assert list(batch_model(model, "b").adapters)[0] == "b"
    assert batch_model(model, None).adapters == {}
    with pytest.raises(ValueError, match="unknown adapter 'c'; this app serves: a, b"):
        batch_model(model, "c")
