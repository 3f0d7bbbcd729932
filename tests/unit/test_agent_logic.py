"""The reasoning agent's pure logic: the action schema, the vote over answers, retrieval over MELD rows."""
import jsonschema
import pytest
from helpers import MELD_DIR, requires_meld

from mllm_mer.core.types import LabelSet, Prediction, Sample, TaskPrediction
from mllm_mer.strategies.agent import action_schema
from mllm_mer.strategies.consistency import vote


def test_the_action_schema_is_a_choice_of_tools_and_answer_alone_at_the_end():
    answer = {"type": "object", "properties": {"emotion": {"type": "string", "enum": ["joy", "anger"]}},
              "required": ["emotion"], "additionalProperties": False}
    look = {"type": "object", "properties": {"n": {"enum": [1, 2]}}, "required": ["n"], "additionalProperties": False}
    schema = action_schema({"look": look}, answer)
    jsonschema.validate({"look": {"n": 2}}, schema)
    jsonschema.validate({"answer": {"emotion": "joy"}}, schema)
    for bad in ({"look": {"n": 3}}, {"answer": {"emotion": "calm"}}, {"shout": {}},
                {"look": {"n": 1}, "answer": {"emotion": "joy"}}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
    final = action_schema({}, answer)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"look": {"n": 1}}, final)


def test_vote_takes_the_majority_averages_probabilities_and_records_agreement():
    labels = (LabelSet("emotion", ("joy", "anger", "sadness")),)

    def draw(label, p):
        return Prediction("s", tasks={"emotion": TaskPrediction(label, {"joy": p, "anger": 1 - p, "sadness": 0.0})})

    voted = vote([draw("joy", 0.6), draw("anger", 0.3), draw("joy", 0.9), Prediction.failure("s", "x")], labels, 0.7)
    assert voted.label("emotion") == "joy"
    assert voted.extras["consistency"]["agreement"] == {"emotion": pytest.approx(2 / 3)}
    assert voted.extras["consistency"]["n"] == 4 and voted.extras["consistency"]["labels"][3] is None
    assert voted.tasks["emotion"].probabilities["joy"] == pytest.approx(0.6)
    tie = vote([draw("anger", 0.7), draw("joy", 0.6)], labels, 0.7)  # 1:1; joy is the more probable on average
    assert tie.label("emotion") == "joy"


@requires_meld
def test_retrieval_finds_the_matching_meld_row_and_never_the_sample_itself(tmp_path, monkeypatch):
    monkeypatch.setattr("mllm_mer.prompting.demonstrations.USER_CACHE", tmp_path / "cache")
    from mllm_mer.datasets import load_split
    from mllm_mer.prompting.demonstrations import DemonstrationIndex
    from mllm_mer.stages.retrieval import index_for, split_source

    train = load_split("meld", str(MELD_DIR), "train").samples
    index = index_for("meld", str(MELD_DIR), "train")
    assert index.cache_file.is_file()
    source = split_source("meld", str(MELD_DIR), "train")
    probe = next(s for s in train if len(s.transcript or "") > 60)
    # From another split (a paraphrase query), the row itself is the nearest.
    query = Sample(id="query", transcript=probe.transcript, context=probe.context)
    assert index.nearest([query], 1, source="elsewhere")[0][0].id == probe.id
    # From its own split, neither the row nor any row of its dialogue comes back.
    found = index.nearest(list(train[:200]), 8, source)
    for sample, demos in zip(train[:200], found, strict=True):
        assert len(demos) == 8
        assert all(d.id != sample.id for d in demos)
        dialogue = sample.metadata["dialogue"]
        assert all(next(s for s in train if s.id == d.id).metadata["dialogue"] != dialogue for d in demos)
    again = DemonstrationIndex(train, source)  # read back from the cache: same answers
    assert [d.id for d in again.nearest([query], 4, "elsewhere")[0]] == [d.id for d in index.nearest([query], 4,
                                                                                                      "elsewhere")[0]]


def test_a_thought_between_steps_keeps_the_runs_markers_and_a_small_bound():
    from dataclasses import replace

    from mllm_mer.core.families import PROMPTED_BLOCK, QWEN_THINK
    from mllm_mer.strategies.agent.loop import THOUGHT_TOKENS, thought_block, tools_instructions

    assert thought_block(None) is None
    long = thought_block(replace(QWEN_THINK, max_tokens=1024))
    assert (long.open, long.close, long.max_tokens) == (QWEN_THINK.open, QWEN_THINK.close, THOUGHT_TOKENS)
    assert thought_block(replace(PROMPTED_BLOCK, max_tokens=8)).max_tokens == 8  # the run's smaller bound stays
    plain = tools_instructions(("look",), 3)
    asked = tools_instructions(("look",), 3, thought_block(PROMPTED_BLOCK))
    assert "<reasoning>" not in plain and "one JSON action" in plain
    assert f"a short thought inside <reasoning></reasoning> (at most {THOUGHT_TOKENS} tokens" in asked


def test_the_signals_tool_reads_a_part_of_the_recording_and_is_listed_only_where_signals_are(tmp_path):
    """The agent's `signals(start, end)`: offered and described for a sample with a signal file (windows on the
    recording's grid), its observation the window's words as data; a sample without signals reads as before."""
    import numpy as np

    from mllm_mer.core.labels import load_label_scheme
    from mllm_mer.core.types import PromptSetup
    from mllm_mer.stages.prepare import prepare
    from mllm_mer.strategies.agent import Toolbox, start
    from mllm_mer.strategies.agent.tools import offered, run_tool
    from mllm_mer.synthetic.physio import AROUSED, CALM, simulate, write_csv

    calm, aroused = simulate(CALM, 20, 128, seed=1), simulate(AROUSED, 20, 128, seed=2)
    write_csv(tmp_path / "s.csv", {k: np.concatenate([calm[k], aroused[k]]) for k in ("ECG", "EDA", "RESP")}, 128)
    setup = PromptSetup(load_label_scheme("meld"), modalities=("text", "physio"))
    box = Toolbox(setup)
    with_signals, plain = prepare([Sample(id="a", transcript="Fine.", physio=str(tmp_path / "s.csv")),
                                   Sample(id="b", transcript="Fine.")], setup)
    episodes = [start(p.prompt, p.sample, p.media, box) for p in (with_signals, plain)]
    schemas = [offered(ep, box) for ep in episodes]
    assert "signals" in schemas[0] and "signals" not in schemas[1]
    last = schemas[0]["signals"]["properties"]["end"]["enum"][-1]
    assert 39.5 < last <= 40  # the recording's end, on the tool's grid
    assert "signals(start, end)" in episodes[0].messages[0]["content"]
    assert "signals(start, end)" not in episodes[1].messages[0]["content"]
    rates = {}
    for lo, hi in ((0, 20), (20, last)):
        seen = run_tool("signals", episodes[0], box, {"start": lo, "end": hi})
        assert seen.text.startswith(f"{lo:.2f}-{hi:.2f} s: <physio_cues>") and "heart rate" in seen.text
        rates[lo] = float(seen.summary.split("heart rate ")[1].split(" bpm")[0])
    assert rates[20] > rates[0] + 10  # the aroused half beats faster
