"""A strategy is its module plus one registry line: a toy one registered here, inside the test, runs through
`evaluate` on the tiny model (transformers backend) and writes its extras and its own report section."""
import json
from collections import Counter

from mllm_mer.config import EvaluateConfig, build
from mllm_mer.core import registry
from mllm_mer.core.types import extras_of
from mllm_mer.evaluation.report import summary
from mllm_mer.evaluation.runner import run_evaluation
from mllm_mer.strategies import BaseStrategy, single


class Coin(BaseStrategy):
    """A toy strategy: the single answer, plus a coin tossed per sample (kept under its name, reported by it)."""

    name = "coin"

    @classmethod
    def from_config(cls, config, scheme):
        return cls()

    def answer(self, backend, ready, run):
        predictions = single().answer(backend, ready, run)
        for i, prediction in enumerate(predictions):
            prediction.extras[self.name] = {"side": "heads" if i % 2 == 0 else "tails"}
        return predictions

    @classmethod
    def statistics(cls, records):
        sides = Counter((extras_of(r["prediction"]).get("coin") or {}).get("side") for r in records)
        return {"heads": sides["heads"], "tails": sides["tails"]}

    @classmethod
    def report_section(cls, stats):
        return ["", "### Coin", "", f"heads {stats['heads']}, tails {stats['tails']}"]

    @classmethod
    def summary_lines(cls, stats):
        return [f"coin: {stats['heads']} heads"]


def test_a_strategy_registered_at_run_time_writes_its_extras_and_its_report_section(tmp_path, hf_backend,
                                                                                    monkeypatch):
    monkeypatch.setitem(registry.STRATEGIES, "coin", f"{__name__}:Coin")  # the one registry line
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({"id": f"u{i}", "text": f"line {i}", "label": "neutral"}) + "\n"
                                for i in range(4)))
    out = tmp_path / "run"
    cfg = build(EvaluateConfig, dataset="manifest", data_dir=str(manifest), out=str(out),
                model=hf_backend.config.model.model, template="label_only", modalities=["text"], strategy="coin")
    metrics = run_evaluation(cfg, backend=hf_backend, progress=False)
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 4
    assert sorted(r["prediction"]["extras"]["coin"]["side"] for r in rows) == ["heads", "heads", "tails", "tails"]
    assert metrics["coin"] == {"heads": 2, "tails": 2} and metrics["run"]["strategy"] == {"strategy": "coin"}
    report = (out / "report.md").read_text()
    assert "## Strategy" in report and "`strategy=coin`" in report
    assert "### Coin\n\nheads 2, tails 2" in report
    assert "coin: 2 heads" in summary(metrics) and "coin: 2 heads" in report
