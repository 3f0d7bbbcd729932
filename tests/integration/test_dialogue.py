"""Whole conversations: transcript files, predicted context (each dialogue on its own, or in lockstep), shift
metrics, the dialogue verb."""
import json

import pytest
from helpers import MELD_DIR, SRT, VTT, requires_meld, run_cli
from PIL import Image

from mllm_mer.core.types import PromptSetup, Sample
from mllm_mer.pipeline.dialogue import classify_dialogues
from mllm_mer.strategies import RunContext
from mllm_mer.synthetic.media import write_clip


def test_context_holds_exactly_the_predictions_for_earlier_turns_in_lockstep(hf_backend, meld_spec):
    dialogues = [[Sample(id=f"d{d}t{t}", transcript=f"dialogue {d} turn {t}", speaker="AB"[t % 2])
                  for t in range(n)] for d, n in enumerate((3, 1, 2))]
    steps = []
    results = classify_dialogues(hf_backend, dialogues, RunContext(PromptSetup(meld_spec, template="label_only")),
                                 "predicted",
                                 window=-1, on_turn=lambda batch, preds: steps.append((batch, preds)))
    assert [len(batch) for batch, _ in steps] == [3, 2, 1]  # turn i of every dialogue in one call
    for batch, _ in steps:
        for sample in batch:
            d, t = (int(x) for x in sample.id[1:].split("t"))
            expected = [results[d][j].label("emotion") for j in range(t)]
            assert [turn.emotion for turn in sample.context] == expected
            assert [turn.text for turn in sample.context] == [f"dialogue {d} turn {j}" for j in range(t)]
    # a resumed run asks only for turns not yet done; done turns still label the context
    done = {dialogues[0][0].id: results[0][0]}
    asked = []
    run = RunContext(PromptSetup(meld_spec, template="label_only"))
    classify_dialogues(hf_backend, dialogues[:1], run, "predicted", done=done,
                       on_turn=lambda batch, preds: asked.extend(s.id for s in batch))
    assert asked == ["d0t1", "d0t2"]


@pytest.mark.vllm
@requires_meld
@pytest.mark.parametrize("context_labels", ["predicted", "gold"])
def test_dialogues_each_on_their_own_on_the_vllm_engine_equal_lockstep(vllm_backend, meld_spec, context_labels,
                                                                        monkeypatch):
    """Continuous (each dialogue's next turn goes out once its last answer has written its label) and lockstep
    give the same labels and probabilities, each turn's context holds the labels given for its dialogue's earlier
    turns, and a resumed run asks only the turns not yet answered."""
    from mllm_mer.backends.vllm_engine import EngineStream
    from mllm_mer.conversation.context import dialogues_of
    from mllm_mer.datasets import load_split

    events, submit = [], EngineStream.submit

    def logged_submit(self, key, prompt, *args, **kwargs):  # test instrumentation: when each answer went out
        events.append(("asked", prompt.sample_id))
        return submit(self, key, prompt, *args, **kwargs)

    monkeypatch.setattr(EngineStream, "submit", logged_submit)

    dialogues = [d for d in dialogues_of(load_split("meld", MELD_DIR, "dev").samples) if len(d) >= 5][:3]
    dialogues = [d[:n] for d, n in zip(dialogues, (5, 1, 3), strict=True)]  # a long, a one-turn, a middle one
    run = RunContext(PromptSetup(meld_spec, template="label_only", modalities=("text",)))
    seen = {True: [], False: []}

    def given_out(continuous, batch):
        seen[continuous].append(batch)
        events.extend(("answered", s.id) for s in batch if continuous)

    answers = {continuous: classify_dialogues(vllm_backend, dialogues, run, context_labels, window=-1,
                                              continuous=continuous,
                                              on_turn=lambda batch, _, c=continuous: given_out(c, batch))
               for continuous in (True, False)}
    if context_labels == "predicted":  # each turn on its own as it finishes, or turn i of all three at once
        assert [len(batch) for batch in seen[True]] == [1] * 9 and len(seen[False][0]) == 3
        # a next turn went out once its previous answer had written its label, before that turn was answered
        long = [s.id for s in dialogues[0]]
        assert any(events.index(("asked", later)) < events.index(("answered", earlier))
                   for earlier, later in zip(long, long[1:], strict=False))
    seen = {c: [s for batch in batches for s in batch] for c, batches in seen.items()}
    for continuous, results in answers.items():
        assert all(p.ok for d in results for p in d)
        for sample in seen[continuous]:
            k, step = next((k, d.index(s)) for k, d in enumerate(dialogues) for s in d if s.id == sample.id)
            expected = [results[k][j].label("emotion") if context_labels == "predicted"
                        else dialogues[k][j].gold["emotion"] for j in range(step)]
            assert [turn.emotion for turn in sample.context] == expected
    for streamed, stepped in zip(answers[True], answers[False], strict=True):
        assert [p.label("emotion") for p in streamed] == [p.label("emotion") for p in stepped]
        for a, b in zip(streamed, stepped, strict=True):
            probs_a, probs_b = a.tasks["emotion"].probabilities, b.tasks["emotion"].probabilities
            assert max(abs(probs_a[label] - probs_b[label]) for label in probs_a) < 1e-6
    assert sorted(s.id for s in seen[True]) == sorted(s.id for d in dialogues for s in d)
    # resumed: turns already answered are not asked again, and their labels still feed the later turns' context
    done = {dialogues[0][0].id: answers[False][0][0], dialogues[0][1].id: answers[False][0][1],
            dialogues[2][0].id: answers[False][2][0]}
    asked = []
    resumed = classify_dialogues(vllm_backend, dialogues, run, context_labels, window=-1, done=done,
                                 on_turn=lambda batch, _: asked.extend(s.id for s in batch))
    assert sorted(asked) == sorted(s.id for d in dialogues for s in d if s.id not in done)
    assert [[p.label("emotion") for p in d] for d in resumed] == [[p.label("emotion") for p in d]
                                                                  for d in answers[False]]


@pytest.fixture(scope="module")
def conversation(tmp_path_factory):
    root = tmp_path_factory.mktemp("talk")
    clip = write_clip(root / "talk.mp4", seconds=4.0, fps=8, tone_hz=220)
    (root / "talk.srt").write_text(SRT)
    (root / "talk.vtt").write_text(VTT)
    return root, clip


def test_a_cue_beyond_the_recording_is_answered_from_its_words_with_a_note(tiny_model, conversation, tmp_path):
    root, clip = conversation
    late = root / "late.srt"
    late.write_text(SRT + "\n4\n00:00:09,000 --> 00:00:10,500\nBob: Are you still there?\n")
    out = tmp_path / "late"
    proc = run_cli("dialogue", "--model", tiny_model, "--video", clip, "--transcript", late, "--out", out, "--template",
                   "label_only", "--max-frames", "2", check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(x) for x in (out / "timeline.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(r["ok"] for r in rows)
    assert any("no frames in the window 9.0-10.5 s (the video holds 4.0 s)" in note for note in rows[3]["notes"])
    assert not any("window" in note for r in rows[:3] for note in r["notes"])
    assert "The recording ends at 4.0 s; 1 utterance starts after it" in (out / "timeline.md").read_text()


@pytest.mark.parametrize("suffix, backend", [(".srt", "transformers"), (".vtt", "transformers"),
                                             pytest.param(".srt", "vllm", marks=pytest.mark.vllm)])
def test_dialogue_command_writes_the_timeline(tiny_model, conversation, tmp_path, suffix, backend):
    root, clip = conversation
    out = tmp_path / "timeline"
    engine = ["--enforce-eager", "--max-model-len", "4096"] if backend == "vllm" else []
    proc = run_cli("dialogue", "--model", tiny_model, "--dtype", "float32", "--video", clip, "--transcript",
                   root / f"talk{suffix}", "--out", out, "--template", "label_only", "--max-frames", "2", "--backend",
                   backend, *engine, "--context-labels", "predicted", check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(x) for x in (out / "timeline.jsonl").read_text().splitlines()]
    assert [r["speaker"] for r in rows] == ["Ann", "Bob", "Ann"]
    assert [(r["start"], r["end"]) for r in rows] == [(0.0, 1.2), (1.2, 2.4), (2.4, 3.8)]
    assert all(r["ok"] and r["labels"]["emotion"] for r in rows)
    with Image.open(out / "timeline.png") as image:
        assert image.size[0] > 300 and image.size[1] > 100
    report = (out / "timeline.md").read_text()
    assert "| Ann | 2 |" in report and "| Bob | 1 |" in report and "context labels: predicted" in report


def _evaluate_meld(out, tiny_model, *extra):
    return run_cli("evaluate", "--dataset", "meld", "--data-dir", MELD_DIR, "--split", "test", "--limit", "30",
                   "--model", tiny_model, "--template", "label_only", "--mode", "score", "--context-labels",
                   "predicted", "--batch-size", "8", "--out", out, *extra, check=False)


@requires_meld
def test_evaluate_with_predicted_context_on_meld_reports_shifts_and_resumes(tiny_model, tmp_path):
    reference = tmp_path / "reference"
    done = _evaluate_meld(reference, tiny_model)
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads(x) for x in (reference / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == 30 == len({r["id"] for r in records})
    label = {r["id"]: r["prediction"]["tasks"]["emotion"]["label"] for r in records}
    # Each turn saw the labels predicted for the turns before it in its dialogue (window 5).
    for r in records:
        dia, utt = (int(x) for x in r["id"][3:].split("_utt"))
        earlier = [f"dia{dia}_utt{u}" for u in range(utt) if f"dia{dia}_utt{u}" in label][-5:]
        assert r["inputs"].get("context_emotions", []) == [label[e] for e in earlier]
    metrics = json.loads((reference / "metrics.json").read_text())
    assert metrics["dialogue"]["context_labels"] == "predicted" and metrics["dialogue"]["dialogues"] >= 2
    assert 0 <= metrics["dialogue"]["shift_f1"] <= 1 and metrics["dialogue"]["gold_shifts"] > 0
    assert "## Dialogue" in (reference / "report.md").read_text()
    # A crash mid-dialogue: the finished turns stay, the rest is asked again with the same context.
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    (crashed / "run.json").write_text((reference / "run.json").read_text())
    lines = (reference / "predictions.jsonl").read_text().splitlines(keepends=True)
    (crashed / "predictions.jsonl").write_text("".join(lines[:13]))
    done = _evaluate_meld(crashed, tiny_model)
    assert done.returncode == 0, done.stderr[-3000:]
    resumed = [json.loads(x) for x in (crashed / "predictions.jsonl").read_text().splitlines()]
    assert resumed[:13] == [json.loads(x) for x in lines[:13]]
    assert sorted(r["id"] for r in resumed) == sorted(label)
    assert {r["id"]: r["prediction"]["tasks"]["emotion"]["label"] for r in resumed} == label


@requires_meld
def test_dialogue_command_takes_a_dataset_dialogue(tiny_model, tmp_path):
    import csv

    with open(MELD_DIR / "test_sent_emo.csv", encoding="utf-8", newline="") as f:
        expected = [r for r in csv.DictReader(f) if r["Dialogue_ID"] == "17"]
    out = tmp_path / "d17"
    done = run_cli("dialogue", "--dataset", "meld", "--data-dir", MELD_DIR, "--split", "test", "--dialogue", "17",
                   "--model", tiny_model, "--template", "label_only", "--out", out, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(x) for x in (out / "timeline.jsonl").read_text().splitlines()]
    assert len(rows) == len(expected) > 1
    in_order = sorted(expected, key=lambda r: int(r["Utterance_ID"]))
    assert [r["speaker"] for r in rows] == [r["Speaker"] for r in in_order]
    assert (out / "timeline.png").stat().st_size > 0
    assert "context labels: none" in (out / "timeline.md").read_text()  # the one default of every verb
    # Dialogue 17's scenes lie 647 s apart: the figure draws that silence shorter, marks it, and says so.
    spans = sorted((r["start"], r["end"]) for r in rows)
    start, end = max(((max(e for _, e in spans[:i]), spans[i][0]) for i in range(1, len(spans))),
                     key=lambda gap: gap[1] - gap[0])
    assert end - start > 600
    [said] = [x for x in (out / "timeline.md").read_text().splitlines()
              if x.startswith("In timeline.png, silences are drawn shorter (marked //): ")]
    assert f"{start:.1f}-{end:.1f} s ({end - start:.0f} s)" in said, said
    missing = run_cli("dialogue", "--dataset", "meld", "--data-dir", MELD_DIR, "--split", "test", "--dialogue", "99999",
                      "--model", tiny_model, "--out", tmp_path / "none", check=False)
    assert missing.returncode == 2 and "no dialogue '99999'" in missing.stderr
