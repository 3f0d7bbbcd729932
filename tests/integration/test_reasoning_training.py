"""Reasoning learnt by SFT: a label that needs an intermediate result (the parity of a count of cue words) is
learnt when the recipe trains the reasoning block before the answer, and not by the same recipe answering in
one step; the adapter answers in the order it was trained in, with no flag."""
import json

import pytest
from helpers import REPO, recipe_overrides, run_cli

REASONING_RECIPE = "finetune/configs/tiny_reasoning_lora.yaml"


@pytest.fixture(scope="module")
def parity_task(tmp_path_factory):
    """The task as the recipe's comment says to make it: `mllm-mer make-tiny DIR --parity-task TASK`."""
    root = tmp_path_factory.mktemp("parity-task")
    made = run_cli("make-tiny", root / "tiny", "--parity-task", root / "cue-parity")
    assert "cue-parity task (reasoning targets)" in made.stdout
    return root / "cue-parity"


def reasoning_finetune(model, task, out, *extra):
    done = run_cli("finetune", "--config", REASONING_RECIPE, *recipe_overrides(model, task, out, *extra),
                   check=False, timeout=900, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def dev_accuracy(out) -> float:
    return json.loads((out / "dev_metrics.json").read_text())["tasks"]["emotion"]["accuracy"]


def test_the_training_target_is_the_reasoning_then_the_answer_with_loss_on_both(tiny_model, parity_task):
    from transformers import AutoProcessor

    from mllm_mer.config import MediaConfig, ModelConfig, PromptConfig
    from mllm_mer.datasets import load_split
    from mllm_mer.pipeline.resolve import resolve_prompt
    from mllm_mer.training.examples import IGNORE, Collator

    labels = str(parity_task / "labels.yaml")
    samples = list(load_split("manifest", parity_task / "manifest.jsonl", "train", labels=labels).samples)[:4]
    setup = resolve_prompt(ModelConfig(model=str(tiny_model)), PromptConfig(
        labels=labels, template="label_only", modalities=["text"], reasoning="before", max_reasoning_tokens=16),
        MediaConfig())
    processor = AutoProcessor.from_pretrained(tiny_model)
    batch = Collator(processor, setup, reasoning_col="reasoning")(samples)
    for row, labels_row, sample in zip(batch["input_ids"], batch["labels"], samples, strict=True):
        learnt = processor.tokenizer.decode([t for t, y in zip(row, labels_row, strict=True) if y != IGNORE])
        thought = sample.metadata["reasoning"]
        assert thought in learnt and sample.gold["emotion"] in learnt, learnt
        assert learnt.index(thought) < learnt.index(f'"{sample.gold["emotion"]}"'), learnt  # reasoning first
        assert sample.transcript not in learnt  # the prompt is not a target

    without = run_cli("finetune", "--config", REASONING_RECIPE, *recipe_overrides(tiny_model, parity_task, "unused"),
                      "reasoning_col=null", check=False, cwd=REPO)
    assert without.returncode != 0 and "reasoning_col" in without.stderr.strip().splitlines()[-1], without.stderr


def test_sft_learns_to_reason_before_answering_where_one_step_stays_at_chance(tiny_model, parity_task, tmp_path):
    reasoning_finetune(tiny_model, parity_task, tmp_path / "before")
    assert dev_accuracy(tmp_path / "before") >= 0.9
    saved = (tmp_path / "before" / "adapter" / "prompt.yaml")
    assert "order: before" in saved.read_text()

    one_step = reasoning_finetune(tiny_model, parity_task, tmp_path / "none", "reasoning=none")
    assert "reasoning_col 'reasoning' unused" in one_step.stdout
    assert dev_accuracy(tmp_path / "none") <= 0.65

    # The adapter answers in its training order with no reasoning flag: each record keeps its reasoning.
    run = run_cli("evaluate", "--model", tiny_model, "--adapter", tmp_path / "before" / "adapter", "--dataset",
                  "manifest", "--data-dir", parity_task / "manifest.jsonl", "--split", "test", "--backend",
                  "transformers", "--dtype", "float32", "--out", tmp_path / "eval", check=False, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["tasks"]["emotion"]["accuracy"] >= 0.9
    records = [json.loads(line) for line in (tmp_path / "eval" / "predictions.jsonl").open()]
    assert all((r["prediction"].get("reasoning") or {}).get("text", "").startswith("false=") for r in records), records[0]
