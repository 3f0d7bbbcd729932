"""Plots and reports: a timeline's long silences compressed, a calibration that would hurt kept as the
identity, `compare` naming how runs differ, the dialogue section's wording."""
import json

import numpy as np

from mllm_mer.conversation.timeline import gap_axis, plot_timeline
from mllm_mer.core.labels import load_label_scheme
from mllm_mer.evaluation.comparison import compare_runs, difference_rows
from mllm_mer.evaluation.report import dialogue_section
from mllm_mer.stages.calibration import arrays, calibration_metrics, describe_fit, fit, rescale_rows

LABELS = ("neutral", "joy", "sadness", "anger", "surprise", "fear", "disgust")


def test_a_long_silence_is_compressed_and_time_reads_true_on_either_side():
    spans = [(0.0, 2.5), (2.6, 5.0), (5.2, 8.0), (660.0, 663.0), (663.5, 666.0)]
    axis = gap_axis(spans)
    [gap] = axis.gaps
    assert (gap.start, gap.end) == (8.0, 660.0)
    assert axis(666.0) - axis(0.0) < 30  # 666 s of recording drawn in under 30: the bars keep their width
    assert axis(663.0) - axis(660.0) == 3.0 and axis(5.0) - axis(2.6) == 2.4  # lengths true outside the gap
    for t in (1.0, 8.0, 300.0, 661.0):
        assert abs(axis.real(axis(t)) - t) < 1e-6
    assert axis.tick(axis(660.0)) == "660" and axis.tick(gap.at + axis.kept / 2) == ""  # no tick inside a break
    assert gap_axis([(0.0, 2.0), (3.0, 5.0), (6.0, 9.0)]).gaps == ()  # a conversation without a long silence


def test_the_timeline_plot_marks_the_break(tmp_path):
    rows = [{"id": str(i), "speaker": s, "start": a, "end": b, "labels": {"emotion": "joy"}, "confidence": 0.8,
             "ok": True} for i, (a, b, s) in enumerate([(0, 2, "A"), (2, 4, "B"), (650, 652, "A")])]
    plot_timeline(rows, tmp_path / "t.png", "emotion", recording=653.0)
    assert (tmp_path / "t.png").stat().st_size > 5_000


def _records(n):
    """Unit-test data (a stand-in for a model, named as such): answers right exactly as often as they are
    confident (ECE near 0), but a wrong answer gives the gold label almost nothing, so the NLL's optimum
    flattens every answer, and ECE with it."""
    records = []
    for i in range(n):
        top = i % len(LABELS)
        gold = (top + 2) % len(LABELS) if i % 5 == 0 else top
        p = np.full(len(LABELS), 1e-4)
        p[top], p[(top + 1) % len(LABELS)] = 0.8, 0.2 - 5e-4
        probabilities = dict(zip(LABELS, p.tolist(), strict=True))
        records.append({"id": str(i), "gold": {"emotion": LABELS[gold]},
                        "prediction": {"ok": True, "tasks": {"emotion": {"label": LABELS[top],
                                                                         "probabilities": probabilities}}}})
    return records


def test_a_fit_that_makes_ece_worse_is_refused_with_a_warning_and_the_identity_kept():
    scheme = load_label_scheme("meld")
    records = _records(400)
    calibration = fit(records, scheme)
    probs, gold = arrays(records, "emotion", LABELS)
    from mllm_mer.stages.calibration import fit_temperature

    fitted = fit_temperature(probs, gold)
    before = calibration_metrics(probs, gold)["ece"]
    assert calibration_metrics(rescale_rows(probs, fitted), gold)["ece"] > before  # the data is as described
    assert calibration.temperatures["emotion"] == 1.0
    assert "made ECE worse on the run it was fitted on" in calibration.warnings["emotion"]
    assert "kept T = 1" in calibration.warnings["emotion"]
    [line] = describe_fit(records, calibration)
    assert "temperature 1.000" in line and "warning: " in line


def _run(folder, settings, mode="generate"):
    folder.mkdir()
    tasks = {"emotion": {"n": 2, "accuracy": 0.5, "weighted_f1": 0.5, "macro_f1": 0.5, "uar": 0.5, "failure_rate": 0.0}}
    (folder / "metrics.json").write_text(json.dumps({"tasks": tasks, "n_samples": 2, "n_failed": 0,
                                                     "run": {"modalities": ["text"], "mode": mode}}))
    (folder / "run.json").write_text(json.dumps({"fingerprint": settings["fingerprint"],
                                                 "provenance": {"host": "h", "config": settings["config"]}}))
    return folder


def test_compare_names_the_settings_in_which_runs_differ(tmp_path):
    a = _run(tmp_path / "a", {"fingerprint": {"model": "m", "prompt": {"template": "zero_shot"}},
                              "config": {"backend": "vllm", "mode": "generate", "context_labels": None,
                                         "out": "runs/a"}})
    b = _run(tmp_path / "b", {"fingerprint": {"model": "m", "prompt": {"template": "label_only", "mode": "score"}},
                              "config": {"backend": "transformers", "mode": "score", "context_labels": "predicted",
                                         "out": "runs/b"}}, mode="score")
    text = compare_runs([a, b])
    section = text.split("## How the runs differ", 1)[1]
    assert "| backend | vllm | transformers |" in section
    assert "| mode | generate | score |" in section and "| prompt.template | zero_shot | label_only |" in section
    assert "| context_labels | - | predicted |" in section and "| prompt.mode | (default) | score |" in section
    assert "model |" not in section and "out" not in section and "host" not in section  # same, or not a setting
    same = difference_rows(["a", "b"], [{"backend": "vllm"}, {"backend": "vllm"}])
    assert same[-1].startswith("The runs share every recorded setting")
    assert "(no run.json)" in "\n".join(difference_rows(["a", "b"], [{"backend": "vllm"}, None]))


def test_the_dialogue_section_says_what_the_context_labels_are():
    metrics = {"dialogue": {"dialogues": 3, "context_labels": "none", "shift_precision": 0.5, "shift_recall": 0.5,
                            "shift_f1": 0.5, "gold_shifts": 2, "predicted_shifts": 2, "speaker_accuracy": {}}}
    text = "\n".join(dialogue_section(metrics))
    assert "context labels: none (earlier turns are shown without labels)" in text
    assert "(none)" not in text
