"""The reasoning agent: tools, the lockstep loop, retrieval, self-consistency, on every backend and through the CLI."""
import json
import random
import subprocess
from dataclasses import replace

import pytest
from helpers import MAX_STEPS, MELD_DIR, agent_setup, check_traces, cli_command, requires_meld, run_cli, varied_inputs

from mllm_mer.config import MediaConfig, ModelConfig, PromptConfig, RetrievalConfig, StrategyConfig
from mllm_mer.conversation.context import dialogue_history
from mllm_mer.core.types import Sample
from mllm_mer.pipeline import predict, prepare
from mllm_mer.pipeline.resolve import resolve_prompt, resolve_strategy
from mllm_mer.stages.resources import Resources
from mllm_mer.strategies.agent import Agent, start
from mllm_mer.strategies.agent.tools import GRID_POINTS, Look, offered


@pytest.fixture(scope="module")
def agent_inputs(tmp_path_factory):
    return varied_inputs(tmp_path_factory.mktemp("agent-media"))


# -- pure logic ---------------------------------------------------------------------------------


def test_tools_are_offered_only_where_they_apply(tiny_model, agent_inputs):
    setup, agent = agent_setup(tiny_model)
    history = dialogue_history(agent_inputs)
    box = agent.toolbox(setup, Resources(history=history))
    ready = {p.sample.id: p for p in prepare(agent_inputs, setup)}
    sound_clip, silent_clip, audio_only = ready["a0"], ready["a1"], ready["a2"]
    tools = lambda p: set(offered(start(p.prompt, p.sample, p.media, box), box))  # noqa: E731
    assert tools(sound_clip) == {"look", "listen"}  # first turn of its dialogue: no earlier turns
    assert tools(silent_clip) == {"look", "context"}
    assert tools(audio_only) == {"listen", "context"}
    assert tools(ready["a9"]) == {"look", "context"}  # fourth turn of its dialogue, one turn shown
    assert tools(ready["r0"]) == set()  # a still and text: nothing more to fetch
    ep = start(silent_clip.prompt, silent_clip.sample, silent_clip.media, box)
    look = offered(ep, box)["look"]["properties"]
    assert look["start"]["enum"][0] == 0.0 and look["end"]["enum"][-1] == 3.0
    assert len(look["start"]["enum"]) == GRID_POINTS
    # A zero-length look at the clip's end is answered from the nearest grid step, and says so.
    seen = Look().run(ep, box, {"start": 3.0, "end": 3.0, "n": 2})
    lo, hi = 3.0 - 3.0 / (GRID_POINTS - 1), 3.0
    assert seen.times and all(lo - 1 / 8 <= t <= hi for t in seen.times)  # a frame shows for 1/fps = 1/8 s
    assert f"of {lo:.2f}-3.00 s" in seen.text and "asked for, 3.00-3.00 s, holds no time of its own" in seen.text
    plain = Look().run(ep, box, {"start": 1.0, "end": 2.0, "n": 1}).text
    assert "asked for" not in plain
    # The history holds the dialogue's earlier turns, never their labels.
    assert all(t.emotion is None for turns in history.values() for t in turns)
    assert [t.text for t in history["a9"]] == [s.transcript for s in agent_inputs[26:29]]


# -- the loop on the backends -------------------------------------------------------------------

def test_agent_on_50_random_inputs_always_ends_with_a_valid_answer_transformers(hf_backend, tiny_model, agent_inputs):
    setup, agent = agent_setup(tiny_model)
    predictions = predict(hf_backend, agent_inputs, setup, strategy=agent,
                          resources=Resources(history=dialogue_history(agent_inputs)))
    check_traces(predictions, agent_inputs, setup, agent)
    used = {s["tool"] for p in predictions for s in p.extras["agent"]["trace"]}
    assert {"look", "listen", "answer"} <= used  # the random model reaches the tools too


@pytest.mark.vllm
def test_agent_on_50_random_inputs_on_the_vllm_engine(vllm_backend, tiny_model, agent_inputs):
    setup, agent = agent_setup(tiny_model)
    predictions = predict(vllm_backend, agent_inputs, setup, strategy=agent,
                          resources=Resources(history=dialogue_history(agent_inputs)))
    check_traces(predictions, agent_inputs, setup, agent)
    looked = [s for p in predictions for s in p.extras["agent"]["trace"] if s["tool"] == "look"]
    assert looked and all(s["images"] >= 1 for s in looked)  # observation frames went to the engine as images


@pytest.mark.vllm
def test_self_consistency_draws_n_answers_and_votes(vllm_backend, tiny_model, agent_inputs):
    setup = resolve_prompt(ModelConfig(model=str(tiny_model)), PromptConfig(labels="meld", template="label_only"),
                           MediaConfig(max_frames=4))
    samples = agent_inputs[:6]
    predictions = predict(vllm_backend, samples, setup,
                          strategy=resolve_strategy(StrategyConfig(samples=5, temperature=1.0), setup))
    for p in predictions:
        record = p.extras["consistency"]
        assert record["n"] == 5 and len(record["labels"]) == 5 and all(record["labels"])
        emotions = [d["emotion"] for d in record["labels"]]
        assert p.label("emotion") in emotions
        assert record["agreement"]["emotion"] == pytest.approx(emotions.count(p.label("emotion")) / 5)
        assert emotions.count(p.label("emotion")) == max(emotions.count(e) for e in emotions)
    draws = [tuple(d["emotion"] for d in p.extras["consistency"]["labels"]) for p in predictions]
    assert any(len(set(d)) > 1 for d in draws)  # sampled: the draws differ


# -- retrieval ----------------------------------------------------------------------------------


# -- the CLI --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def agent_manifest(agent_inputs, tmp_path_factory):
    folder = tmp_path_factory.mktemp("agent-manifest")
    rows = [{"id": s.id, "text": s.transcript, "speaker": s.speaker, "video": s.video, "audio": s.audio,
             "dialogue": s.metadata["dialogue"], "label": random.Random(i).choice(["joy", "anger", "neutral"]),
             "split": "train" if i < 10 else "test"}
            for i, s in enumerate(agent_inputs[20:])]
    manifest = folder / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def test_cli_evaluate_with_the_agent_writes_traces_and_tool_statistics(tmp_path, tiny_model, agent_manifest):
    out = tmp_path / "run"
    command = cli_command("evaluate", "--dataset", "manifest", "--data-dir", agent_manifest, "--split", "test",
                          "--model", tiny_model, "--backend", "transformers", "--template", "label_only", "--labels",
                          "meld", "--max-frames", "4", "--strategy", "agent", "--max-steps", MAX_STEPS, "--out", out)
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == 20
    traces = [r["prediction"]["extras"]["agent"]["trace"] for r in records]
    assert all(t and t[-1]["tool"] == "answer" and len(t) <= MAX_STEPS for t in traces)
    recalled = [s for t in traces for s in t if s["tool"] == "recall"]
    train_ids = {f"a{i}" for i in range(10)}
    for step in recalled:  # the index is the train split: only its rows come back
        assert {part.strip().split(" (")[0] for part in step["observation"].split(";")} <= train_ids
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["run"]["strategy"]["strategy"] == "agent"
    assert sum(metrics["agent"]["calls_per_tool"].values()) == sum(len(t) for t in traces)
    assert "## Strategy" in (out / "report.md").read_text()
    # Resuming with another strategy is refused: the strategy is part of the run's fingerprint.
    single = list(command)
    single[single.index("agent")] = "single"
    refused = subprocess.run(single, capture_output=True, text=True, timeout=600)
    assert refused.returncode != 0 and "strategy" in refused.stderr


@requires_meld
def test_cli_predict_with_the_retrieved_template_shows_meld_demonstrations(tmp_path, tiny_model, hf_backend):
    from mllm_mer.pipeline.resources import build_resources

    setup = resolve_prompt(ModelConfig(model=str(tiny_model)), PromptConfig(labels="meld", template="retrieved"),
                           MediaConfig())
    retrieval = RetrievalConfig(retrieve_dataset="meld", retrieve_data_dir=str(MELD_DIR), retrieve_split="train",
                                retrieve_k=4)
    resources = build_resources(setup, setup.needs, retrieval)
    [ready] = prepare([Sample(id="q", transcript="Oh my God! I can't believe it!")], setup, resources=resources)
    text = ready.prompt.messages[1]["content"][-1]["text"]
    assert text.count(" -> emotion: ") == 4 and "<examples>" in text
    done = run_cli("predict", "--model", tiny_model, "--template", "retrieved", "--retrieve-dataset", "meld",
                   "--retrieve-data-dir", MELD_DIR, "--transcript", "Oh my God!", check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["ok"]
    missing = run_cli("predict", "--model", tiny_model, "--template", "retrieved", "--transcript", "Oh my God!",
                      check=False)
    assert missing.returncode == 2 and "retrieve" in missing.stderr and "Traceback" not in missing.stderr


# -- learnability: the agent can learn to use a tool -----------------------------------------------

@pytest.mark.vllm
def test_a_lora_trained_on_scripted_traces_learns_to_look_where_the_evidence_is(tiny_model, tmp_path, vllm_backend):
    from mllm_mer.datasets import load_split
    from mllm_mer.synthetic.tasks import WINDOW, make_window_task

    manifest = make_window_task(tmp_path / "hidden-window")
    labels = manifest.parent / "labels.yaml"
    out = tmp_path / "run"
    done = run_cli("finetune", "--config", "finetune/configs/tiny_agent_lora.yaml", f"model={tiny_model}",
                   f"output_dir={out}", f"data_dir={manifest}", f"labels={labels}",
                   f"dataset_options={{labels: {labels}, task: emotion}}", check=False, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    adapter = out / "adapter"
    vllm_backend.register_adapter("looker", str(adapter))
    test = list(load_split("manifest", manifest, "test", labels=str(labels)).samples)
    model = ModelConfig(model=str(tiny_model), adapter=[f"looker={adapter}"])
    setup = resolve_prompt(model, PromptConfig(), MediaConfig())  # the adapter's own prompt (label set, frames)
    looker = Agent(max_steps=3, tools=("look",), look_frames=2)
    assert setup.media.max_frames == 2 and setup.scheme.name == "hidden-window"

    def accuracy(predictions):
        return sum(p.label("emotion") == s.gold["emotion"] for p, s in zip(predictions, test, strict=True)) / len(test)

    agent = predict(vllm_backend, test, setup, adapter="looker", with_probabilities=False, strategy=looker)
    single = predict(vllm_backend, test, setup, adapter="looker", with_probabilities=False)
    assert accuracy(agent) >= 0.9, [p.extras["agent"]["trace"] for p in agent[:3]]
    assert accuracy(single) <= 0.6  # the uniformly sampled frames never show the colour
    looks = [s for p in agent for s in p.extras["agent"]["trace"] if s["tool"] == "look"]
    assert len(looks) >= 0.9 * len(test)
    assert all(s["args"]["start"] <= WINDOW[0] and s["args"]["end"] >= WINDOW[1] - 0.01 for s in looks)


def test_trace_training_learns_every_action_and_masks_the_observations(tiny_model, tmp_path):
    from mllm_mer.config import TrainConfig
    from mllm_mer.datasets import load_split
    from mllm_mer.synthetic.tasks import WINDOW_LOOK, make_window_task
    from mllm_mer.training.examples import Collator
    from mllm_mer.training.model import load_trainable_model
    from mllm_mer.training.sft import agent_strategy, training_resources

    manifest = make_window_task(tmp_path / "hidden-window", n_train=4, n_dev=2, n_test=2)
    labels = manifest.parent / "labels.yaml"
    cfg = TrainConfig.from_yaml("finetune/configs/tiny_agent_lora.yaml", [
        f"model={tiny_model}", f"output_dir={tmp_path / 'out'}", f"data_dir={manifest}", f"labels={labels}",
        f"dataset_options={{labels: {labels}, task: emotion}}"])
    _, processor = load_trainable_model(cfg)
    setup = resolve_prompt(cfg.model, cfg.prompt, cfg.media)
    agent = agent_strategy(cfg)
    samples = list(load_split("manifest", manifest, "train", labels=str(labels)).samples)
    collator = Collator(processor, setup, training_resources(cfg, setup, agent, "train", samples), "trace", agent)
    batch = collator(samples)
    for row, sample in enumerate(samples):
        learned = [int(i) for i, label in zip(batch["input_ids"][row], batch["labels"][row], strict=True)
                   if label != -100]
        look = json.dumps({"look": WINDOW_LOOK["args"]}, separators=(",", ":"))
        answer = json.dumps({"answer": {"emotion": sample.gold["emotion"]}}, separators=(",", ":"))
        assert processor.tokenizer.decode(learned) == f"{look}<|im_end|>\n{answer}<|im_end|>\n"
    # The observation's two frames went in as images (2 per sample), beside each clip's video.
    assert batch["image_grid_thw"].shape[0] == 2 * len(samples)
    broken = [dict(samples[0].metadata, trace=[{"tool": "look", "args": {"start": 1.5, "end": 2, "n": 9}}])]
    with pytest.raises(ValueError, match="not a valid action"):
        collator([replace(samples[0], metadata=broken[0])])


def test_cli_predict_agent_with_reasoning_thinks_before_every_action_and_notes_a_cut_thought(tiny_model, app_clip):
    result = run_cli("predict", "--model", tiny_model, "--backend", "transformers", "--video", app_clip,
                     "--transcript", "You did WHAT?", "--labels", "meld", "--template", "label_only",
                     "--max-frames", "4", "--strategy", "agent", "--max-steps", MAX_STEPS,
                     "--reasoning", "before", "--max-reasoning-tokens", "6")
    prediction = json.loads(result.stdout)
    assert prediction["ok"], prediction["error"]
    trace = prediction["extras"]["agent"]["trace"]
    assert trace and trace[-1]["tool"] == "answer"
    for step in trace:  # the thought comes first, then the tool it chose
        assert list(step).index("thought") < list(step).index("tool"), step
        assert 1 <= step["thought"]["tokens"] <= 6
    cut = [s["step"] for s in trace if s["thought"]["cut"]]
    assert cut, "a random model does not close its block within 6 tokens"
    notes = [n for n in prediction["notes"] if "the thought was cut" in n]
    assert [int(n.split(":")[0].removeprefix("step ")) for n in notes] == cut
    assert all("--max-reasoning-tokens" in n for n in notes)
    reasoning = prediction["reasoning"]
    assert reasoning["order"] == "before" and reasoning["cut"]
    assert reasoning["tokens"] == sum(s["thought"]["tokens"] for s in trace)
    assert all(f"step {s['step']}: {s['thought']['text']}" in reasoning["text"] for s in trace)
    probabilities = prediction["tasks"]["emotion"]["probabilities"]
    assert abs(sum(probabilities.values()) - 1) < 1e-4
