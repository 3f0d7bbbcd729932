"""Strategy extras (pure logic): a prediction keeps what a strategy adds under the strategy's name, each strategy
reports its own, and records written before (top-level trace / consistency / experts) still read and report."""
from mllm_mer.core.types import Prediction, TaskPrediction
from mllm_mer.evaluation.report import strategy_section, write_report
from mllm_mer.strategies.fusion import experts_of
from mllm_mer.strategies.reporting import strategy_statistics

TRACE = [{"step": 1, "tool": "look", "args": {"start": 0, "end": 1}}, {"step": 2, "tool": "answer", "args": {}}]
VOTE = {"n": 3, "temperature": 0.7, "labels": [], "agreement": {"emotion": 2 / 3}}
EXPERTS = {"text": {"emotion": {"joy": 0.7, "anger": 0.3}}, "joint": {"emotion": {"joy": 0.6, "anger": 0.4}}}


def old_record(**fields):
    """A predictions.jsonl row as runs wrote it before extras: the strategy's fields at the top level."""
    return {"id": "a", "gold": {"emotion": "joy"},
            "prediction": {"sample_id": "a", "tasks": {"emotion": {"label": "joy", "probabilities": None}},
                           "rationale": None, "cues": {}, "raw": None, "ok": True, "error": None,
                           "error_kind": None, "notes": [], "trace": None, "consistency": None, "experts": None,
                           **fields}}


def test_a_prediction_keeps_extras_under_the_strategy_name_and_round_trips():
    p = Prediction("a", tasks={"emotion": TaskPrediction("joy")}, extras={"agent": {"trace": TRACE}})
    data = p.to_dict()
    assert data["extras"] == {"agent": {"trace": TRACE}} and not {"trace", "consistency", "experts"} & set(data)
    assert Prediction.from_dict(data) == p and p.extra("agent")["trace"] == TRACE and p.extra("fusion") == {}


def test_an_old_record_reads_into_extras():
    old = old_record(trace=TRACE, consistency=VOTE)
    p = Prediction.from_dict(old["prediction"])
    assert p.extras == {"agent": {"trace": TRACE}, "consistency": VOTE}
    assert Prediction.from_dict(old_record(experts=EXPERTS)["prediction"]).extra("fusion") == {"experts": EXPERTS}
    assert experts_of(old_record(experts=EXPERTS)) == EXPERTS  # fit-fusion and ablate read old runs
    assert experts_of({"prediction": Prediction("a", extras={"fusion": {"experts": EXPERTS}}).to_dict()}) == EXPERTS


def test_each_strategy_reports_its_extras_old_and_new_records_alike():
    new = {"id": "b", "prediction": Prediction("b", extras={"agent": {"trace": TRACE[1:]}, "consistency": VOTE})
           .to_dict()}
    stats = strategy_statistics([old_record(trace=TRACE, consistency=VOTE), new])
    assert stats["agent"]["samples_with_trace"] == 2 and stats["agent"]["calls_per_tool"] == {"look": 1, "answer": 2}
    assert stats["agent"]["answered_without_tools"] == 1 and stats["agent"]["steps_histogram"] == {1: 1, 2: 1}
    assert stats["consistency"] == {"draws_per_sample": 3, "mean_agreement": {"emotion": 2 / 3}}
    assert strategy_statistics([old_record()]) == {}  # a single pass reports nothing of its own
    lines = strategy_section({"run": {"strategy": {"strategy": "agent", "samples": 3}}, **stats})
    assert lines[:4] == ["", "## Strategy", "", "`strategy=agent, samples=3`"]
    assert "| look | 1 |" in lines and any(line.startswith("self-consistency: 3 draws") for line in lines)
    assert lines.index("| look | 1 |") < next(i for i, x in enumerate(lines) if x.startswith("self-consistency"))
    assert strategy_section({"run": {"strategy": {"strategy": "single"}}}) == []


def test_the_report_carries_the_strategy_sections(tmp_path):
    stats = strategy_statistics([old_record(trace=TRACE)])
    metrics = {"run": {"dataset": "d", "strategy": {"strategy": "agent"}}, "n_samples": 1, "n_failed": 0,
               "tasks": {}, "failures": [], **stats}
    write_report(metrics, tmp_path / "report.md")
    report = (tmp_path / "report.md").read_text()
    assert "## Strategy" in report and "1 samples with a trace; mean steps 2.00" in report
