"""Reasoning learnt by SFT: a label that needs an intermediate result (the parity of a count of cue words) is
learnt when the recipe trains the reasoning block before the answer, and not by the same recipe answering in
one step; the adapter answers in the order it was trained in, with no flag."""
import json

import pytest
from helpers import REPO, cli_finetune, dev_accuracy, recipe_overrides, run_cli, served_alike

REASONING_RECIPE = "finetune/configs/tiny_reasoning_lora.yaml"


@pytest.fixture(scope="module")
def parity_task(tmp_path_factory):
    """The task as the recipe's comment says to make it: `mllm-mer make-tiny DIR --parity-task TASK`."""
    root = tmp_path_factory.mktemp("parity-task")
    made = run_cli("make-tiny", root / "tiny", "--parity-task", root / "cue-parity")
    assert "cue-parity task (reasoning targets)" in made.stdout
    return root / "cue-parity"


def reasoning_finetune(model, task, out, *extra):
    return cli_finetune(REASONING_RECIPE, recipe_overrides(model, task, out, *extra))


def test_the_training_target_is_the_reasoning_then_the_answer_with_loss_on_both(tiny_model, parity_task, tmp_path):
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

    without = run_cli("finetune", "--config", REASONING_RECIPE,
                      *recipe_overrides(tiny_model, parity_task, tmp_path / "unused"),
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
    thoughts = [(r["prediction"].get("reasoning") or {}).get("text", "") for r in records]
    assert all(thought.startswith("false=") for thought in thoughts), records[0]


GRPO_RECIPE = "finetune/configs/tiny_reasoning_grpo.yaml"


def test_grpo_rollouts_reason_freely_then_answer_under_the_schema_and_the_loss_covers_both(
        tiny_model, parity_task, tmp_path):
    """Each rollout decodes as `predict --reasoning before` does: the block (no grammar, bounded), its end, then
    a schema-valid answer; the completion the loss scores is all of it. The recipe's order reaches the adapter."""
    from mllm_mer.config import TrainConfig
    from mllm_mer.core.parsing import parse_answer
    from mllm_mer.training.grpo import build_trainer

    # A fresh LoRA on the random model: its answers may spend many small tokens, so the answer gets room.
    fresh = ["init_adapter=null", "dev_split=null", "eval_steps=null", "batch_size=16", "max_steps=1",
             "max_completion_length=48"]
    graded = ["reasoning_col=reasoning", "rewards={correct: 1.0, format: 0.25, reasoning_match: 1.0}"]
    cfg = TrainConfig.from_yaml(GRPO_RECIPE, recipe_overrides(tiny_model, parity_task, tmp_path / "rl", *fresh,
                                                              *graded))
    trainer, recipe, processor = build_trainer(cfg)
    batch = next(iter(trainer.get_train_dataloader()))
    out = trainer._generate_and_score_completions(batch)
    reasoning = recipe.setup.reasoning
    assert reasoning.order == "before" and reasoning.max_tokens == 16
    for ids, mask, row in zip(out["completion_ids"], out["completion_mask"], batch, strict=True):
        kept = ids[mask.bool()].tolist()
        text = processor.tokenizer.decode(kept, skip_special_tokens=True)
        thought, closed, answer = text.partition(reasoning.close + reasoning.after)
        assert closed and thought, text  # the block comes first and ends as inference ends it
        end = processor.tokenizer(reasoning.close + reasoning.after, add_special_tokens=False)["input_ids"]
        starts = [i for i in range(len(kept)) if kept[i:i + len(end)] == end]
        assert starts and 0 < starts[0] <= reasoning.max_tokens, text  # the sampled block, within its bound
        prompt = trainer.rows.prompts[row["sample_id"]]
        assert parse_answer(answer, prompt.label_sets, row["sample_id"]).ok, text  # schema-valid after it
        assert kept[-1] in trainer.eos_token_ids  # the completion the loss scores runs from the block to the end
        sample = trainer.rows.samples[row["sample_id"]]  # reasoning_match reads the row's reference reasoning
        assert trainer.rows.asked[row["sample_id"]].reference == sample.metadata["reasoning"]
    assert 0 < trainer._metrics["train"]["rewards/reasoning_match/mean"][-1] <= 1

    cli_finetune(GRPO_RECIPE, recipe_overrides(tiny_model, parity_task, tmp_path / "cli", *fresh))
    assert "order: before" in (tmp_path / "cli" / "adapter" / "prompt.yaml").read_text()


@pytest.mark.vllm
def test_grpo_think_then_answer_lifts_an_undertrained_reasoning_adapter_and_vllm_serves_it(
        tiny_model, parity_task, vllm_backend, tmp_path):
    """From an SFT adapter stopped early (it counts two or three cues whatever it reads), the recipe as shipped,
    rewarded on the label alone, teaches the count: dev accuracy rises by at least 0.2. The adapter reasons
    before answering with no flag, and the vLLM engine gives the labels transformers gives."""
    from mllm_mer.config import MediaConfig, ModelConfig, PromptConfig
    from mllm_mer.pipeline.resolve import resolve_prompt

    sft, rl = tmp_path / "sft", tmp_path / "rl"
    reasoning_finetune(tiny_model, parity_task, sft, "max_steps=48", "eval_steps=48")
    start = dev_accuracy(sft)
    assert 0.45 <= start <= 0.7  # undertrained on purpose
    cli_finetune(GRPO_RECIPE, recipe_overrides(tiny_model, parity_task, rl, f"init_adapter={sft / 'adapter'}"))
    assert dev_accuracy(rl) >= start + 0.2
    report = (rl / "grpo.md").read_text()
    assert f"Dev accuracy: {start:.3f} before training" in report  # the run scored its own start
    assert "the reasoning blocks credited (not the answers)" in report

    adapter = rl / "adapter"
    saved = resolve_prompt(ModelConfig(model=str(tiny_model), adapter=[f"rl={adapter}"]), PromptConfig(),
                           MediaConfig())
    assert saved.reasoning is not None and saved.reasoning.order == "before"
    hf_preds = served_alike(tiny_model, vllm_backend, parity_task, adapter, saved, "parity-rl")
    assert all(p.ok and p.reasoning["text"].startswith("false=") for p in hf_preds)
