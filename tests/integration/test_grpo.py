"""GRPO: the trainer scores the prompts `predict` builds (media included), learns from rewards alone on the
colour x wording task, resumes, and its adapter is served by vLLM like any other."""
import json

import pytest
import torch
from helpers import cli_finetune, dev_accuracy, recipe_overrides, run_cli, served_alike

from mllm_mer.config import TrainConfig

SFT = "finetune/configs/tiny_lora.yaml"
GRPO = "finetune/configs/tiny_grpo.yaml"


def grpo_recipe(model, task, out, init, *extra) -> TrainConfig:
    return TrainConfig.from_yaml(GRPO, [*recipe_overrides(model, task, out, f"init_adapter={init}"), *extra])


@pytest.fixture(scope="module")
def undertrained(tiny_model, colour_task, tmp_path_factory):
    """An SFT adapter stopped early on purpose: at a constant rate it reads one modality until step 52
    (dev accuracy 0.5; both by step 60)."""
    out = tmp_path_factory.mktemp("grpo") / "sft"
    cli_finetune(SFT, recipe_overrides(tiny_model, colour_task, out, "lr_scheduler=constant", "max_steps=52",
                                       "eval_steps=52", "report_to=[]"))
    return out


@pytest.fixture(scope="module")
def grpo_run(tiny_model, colour_task, undertrained, tmp_path_factory):
    """The CPU recipe through the CLI, from the undertrained adapter (24 steps, dev at 12 and 24)."""
    out = tmp_path_factory.mktemp("grpo") / "rl"
    cli_finetune(GRPO, [*recipe_overrides(tiny_model, colour_task, out, f"init_adapter={undertrained / 'adapter'}"),
                        "max_steps=24"])
    return out


def test_grpo_scores_the_prompt_predict_builds_and_the_clip_reaches_every_forward_pass(
        tiny_model, colour_task, undertrained, tmp_path):
    from mllm_mer.backends.base import render
    from mllm_mer.backends.hf_loading import processor_inputs
    from mllm_mer.config import MediaConfig, ModelConfig, PromptConfig
    from mllm_mer.pipeline.resolve import resolve_prompt
    from mllm_mer.stages.prepare import prepare, prompt_text
    from mllm_mer.training.grpo import build_trainer

    cfg = grpo_recipe(tiny_model, colour_task, tmp_path / "rl", undertrained / "adapter", "max_steps=1",
                      "batch_size=16", "dev_split=null", "eval_steps=null", "save_steps=1")
    trainer, recipe, processor = build_trainer(cfg)
    generated, scored = [], []
    generate = trainer.model.generate

    def spy_generate(**inputs):  # test instrumentation: what sampling was given
        generated.append({k: v.clone() for k, v in inputs.items() if isinstance(v, torch.Tensor)})
        return generate(**inputs)

    trainer.model.generate = spy_generate
    trainer.model.register_forward_pre_hook(
        lambda module, args, kwargs: scored.append({k: kwargs.get(k) for k in ("input_ids", "pixel_values_videos",
                                                                                "video_grid_thw")}),
        with_kwargs=True)
    trainer.train()
    assert generated and scored

    # Sampling saw, row for row, exactly the token ids and frames the transformers backend builds for predict.
    row = trainer._batch[0]
    sample = trainer.rows.samples[row["sample_id"]]
    setup = resolve_prompt(ModelConfig(model=str(tiny_model), adapter=[str(undertrained / "adapter")]),
                           PromptConfig(), MediaConfig())  # what predict resolves from the adapter
    [ready] = prepare([sample], setup)
    expected = processor_inputs(processor, [ready.prompt], [render(processor, ready.prompt)])
    ids = generated[0]["input_ids"][0]
    assert ids[generated[0]["attention_mask"][0].bool()].tolist() == expected["input_ids"][0].tolist()
    frames = len(expected["pixel_values_videos"])
    assert torch.equal(generated[0]["pixel_values_videos"][:frames], expected["pixel_values_videos"])

    # The scored pass (the loss) got every row's frames back: as many videos as sequences, features matching.
    loss_pass = scored[-1]
    assert loss_pass["pixel_values_videos"] is not None
    assert len(loss_pass["video_grid_thw"]) == len(loss_pass["input_ids"])
    assert loss_pass["pixel_values_videos"].sum().item() == pytest.approx(
        generated[0]["pixel_values_videos"].sum().item(), rel=1e-5)  # the same frames, shuffled with their rows

    # ... and through the CLI as a user types it: predict --show-prompt prints the prompt the trainer scored.
    proc = run_cli("predict", "--model", tiny_model, "--adapter", undertrained / "adapter", "--video", sample.video,
                   "--transcript", sample.transcript, "--show-prompt", "--mode", "score", "--dtype", "float32",
                   check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    trained_prompt = prompt_text(type(ready)(sample=sample, prompt=trainer.rows.prompts[sample.id]))
    assert trained_prompt in proc.stderr


def test_grpo_resumes_from_its_checkpoint(tiny_model, colour_task, undertrained, tmp_path):
    from transformers import TrainerCallback

    from mllm_mer.training.grpo import train

    class StopAfter3(TrainerCallback):  # an interruption right after the step-3 checkpoint
        def on_step_end(self, args, state, control, **kwargs):
            control.should_training_stop = state.global_step >= 3

    class FirstStep(TrainerCallback):
        seen: list = []

        def on_step_end(self, args, state, control, **kwargs):
            self.seen.append(state.global_step)

    common = ["max_steps=6", "batch_size=16", "dev_split=null", "eval_steps=null", "save_steps=3", "logging_steps=1"]
    out = tmp_path / "rl"
    train(grpo_recipe(tiny_model, colour_task, out, undertrained / "adapter", *common), callbacks=[StopAfter3()])
    checkpoint = out / "checkpoints" / "checkpoint-3"
    assert checkpoint.is_dir() and not (out / "checkpoints" / "checkpoint-6").exists()
    steps = FirstStep()
    train(grpo_recipe(tiny_model, colour_task, out, undertrained / "adapter", *common,
                      f"resume_from_checkpoint={checkpoint}"), callbacks=[steps])
    assert steps.seen == [4, 5, 6]  # continued from the saved step, not from the start
    history = json.loads((out / "checkpoints" / "checkpoint-6" / "trainer_state.json").read_text())["log_history"]
    assert [h["step"] for h in history if "reward" in h] == [1, 2, 3, 4, 5, 6]


def _history(run):
    last = max((run / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    return json.loads((last / "trainer_state.json").read_text())["log_history"]


@pytest.mark.vllm
def test_grpo_learns_from_rewards_alone_and_vllm_serves_its_adapter(tiny_model, colour_task, undertrained, grpo_run,
                                                                    vllm_backend):
    from mllm_mer.config import MediaConfig, ModelConfig, PromptConfig
    from mllm_mer.pipeline.resolve import resolve_prompt

    start = dev_accuracy(undertrained)
    assert 0.45 <= start <= 0.7  # undertrained on purpose: it reads one modality
    steps = [h for h in _history(grpo_run) if "reward" in h]
    assert [h["step"] for h in steps] == list(range(2, 25, 2))

    def mean(rows, key):
        return sum(r[key] for r in rows) / len(rows)

    # With no gold answer text ever shown, the right labels among the sampled answers rose, and so did the
    # dev accuracy: the policy learnt to read the modality it ignored. Answers are sampled under the schema
    # (as predict decodes), so every one is well formed.
    assert mean(steps[-3:], "rewards/correct/mean") >= mean(steps[:2], "rewards/correct/mean") + 0.2
    assert all(h["rewards/format/mean"] == 1.0 for h in steps)
    assert dev_accuracy(grpo_run) >= start + 0.2 and dev_accuracy(grpo_run) >= 0.85
    report = (grpo_run / "grpo.md").read_text()
    assert "| step | reward | KL | answer tokens | groups without signal | step s | sampling s | correct | format |" \
        in report
    assert all(0 < h["generation_time"] < h["step_time"] for h in steps)  # where a step's time goes
    assert (grpo_run / "grpo.png").stat().st_size > 10_000

    # An ordinary adapter: it carries the prompt it was trained with (the SFT adapter's), vLLM serves it.
    adapter = grpo_run / "adapter"
    saved = resolve_prompt(ModelConfig(model=str(tiny_model), adapter=[f"rl={adapter}"]), PromptConfig(),
                           MediaConfig())
    assert saved == resolve_prompt(ModelConfig(model=str(tiny_model), adapter=[f"sft={undertrained / 'adapter'}"]),
                                   PromptConfig(), MediaConfig())
    hf_preds = served_alike(tiny_model, vllm_backend, colour_task, adapter, saved, "rl")
    assert all(p.ok for p in hf_preds)


def _claim_rates(run) -> list[float]:
    """Per logged step, the share of sampled answers whose rationale names a modality the prompt did not
    show: well-formed answers (format) less the well-formed ones that name none (grounded)."""
    return [h["rewards/format/mean"] - h["rewards/grounded/mean"] for h in _history(run) if "reward" in h]


def test_the_grounded_reward_stops_rationales_naming_an_absent_modality(tiny_model, colour_task, tmp_path):
    # Text-only prompts; the SFT targets alternate a lexical rationale and a visual one the prompt cannot
    # support, so the SFT adapter writes both.
    rows = [json.loads(line) for line in (colour_task / "manifest.jsonl").read_text().splitlines()]
    manifest = tmp_path / "rationales.jsonl"
    manifest.write_text("".join(json.dumps({**row, "video": str(colour_task / row["video"]),
                                            "rationale": "She frowns at the camera." if i % 2
                                            else "The words say it plainly."}) + "\n"
                                for i, row in enumerate(rows)))
    data = [f"data_dir={manifest}"]
    sft = tmp_path / "sft"
    cli_finetune(SFT, [*recipe_overrides(tiny_model, colour_task, sft, "template=zero_shot", "modalities=[text]",
                                         "report_to=[]"), *data])
    common = [*recipe_overrides(tiny_model, colour_task, tmp_path / "x", f"init_adapter={sft / 'adapter'}"), *data,
              "max_steps=16", "logging_steps=2", "temperature=0.7", "max_completion_length=48", "dev_split=null",
              "eval_steps=null", "batch_size=16",
              "constrained=false"]  # free sampling: the rationale's wording is what the rewards shape
    runs = {}
    for name, rewards in (("grounded", "{grounded: 1.0, format: 1.0}"), ("format", "{format: 1.0, grounded: 0.0}")):
        runs[name] = tmp_path / name
        cli_finetune(GRPO, [*common, f"output_dir={runs[name]}", f"rewards={rewards}"])
    with_reward, without = _claim_rates(runs["grounded"]), _claim_rates(runs["format"])
    assert with_reward[0] >= 0.1  # the SFT adapter names the absent face at first
    assert sum(with_reward[-4:]) / 4 <= 0.05  # rewarded for grounded rationales, it stops
    assert sum(without[-4:]) / 4 >= 0.3  # rewarded for form alone (weight 0 on grounded), it does not
