"""The bad-input matrix on the command line: every bad input is a one-line error naming the file (and line),
given before any model is loaded. Never a traceback."""
import pytest

from mllm_mer.cli import main

# -- the command line: one-line errors before any model is loaded ---------------------------------


def _manifest(tmp_path, text: str, name="m.csv", encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def _evaluate(manifest, tmp_path, *extra):
    return ["evaluate", "--model", str(tmp_path / "never-loaded"), "--dataset", "manifest", "--data-dir",
            str(manifest), "--out", str(tmp_path / "run"), *extra]


def _with_garbage_run(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "predictions.jsonl").write_text('{"id": "a"}\nnot json\n')
    return _manifest(tmp_path, "id,text,label\na,hi,joy\n")


def _dialogue(transcript):
    return ["dialogue", "--model", str(transcript.parent / "never-loaded"), "--transcript", str(transcript),
            "--out", str(transcript.parent / "timeline")]


def _meld(tmp_path, text: str):
    folder = tmp_path / "meld"
    folder.mkdir()
    (folder / "dev_sent_emo.csv").write_text(text)
    return folder


def _fifo(path):
    import os

    os.mkfifo(path)  # reading it would block until a writer comes: it must be refused, not opened
    return str(path)


def _labels(tmp_path, text: str, expected: str):
    return ["predict", "--transcript", "hi", "--labels", str(_manifest(tmp_path, text + "\n", "l.yaml"))], expected


CASES = {
    "label file without tasks": lambda t: (["predict", "--transcript", "hi", "--labels",
                                            str(_manifest(t, "foo: 1\n", "l.yaml"))], "l.yaml: not a label file"),
    "label task without labels": lambda t: (["predict", "--transcript", "hi", "--labels",
                                             str(_manifest(t, "tasks: [{task: emotion}]\n", "l.yaml"))],
                                            "task 1 needs `task:` and a `labels:` list"),
    "malformed label YAML": lambda t: (["predict", "--transcript", "hi", "--labels",
                                        str(_manifest(t, "tasks: [unclosed\n", "l.yaml"))], "l.yaml:2: not a readable"),
    "latin-1 context file": lambda t: (["predict", "--transcript", "hi", "--context",
                                        str(_manifest(t, '{"speaker": "A", "text": "ok"}\n{"text": "caf\xe9"}\n',
                                                      "c.jsonl", "latin-1"))], "c.jsonl:2: not UTF-8"),
    "context line not JSON": lambda t: (["predict", "--transcript", "hi", "--context",
                                         str(_manifest(t, "{oops\n", "c.jsonl"))], "c.jsonl:1: not a JSON line"),
    "latin-1 manifest": lambda t: (_evaluate(_manifest(t, "id,text,label\na,ok,joy\nb,caf\xe9,joy\n",
                                                       encoding="latin-1"), t), "m.csv:3: not UTF-8"),
    "manifest line not JSON": lambda t: (_evaluate(_manifest(t, '{"id": "a"}\n[1,\n', "m.jsonl"), t),
                                         "m.jsonl:2: not a JSON line"),
    "missing text column": lambda t: (_evaluate(_manifest(t, "id,said,label\na,hi,joy\n"), t),
                                      "no text column 'text'"),
    "missing label column": lambda t: (_evaluate(_manifest(t, "id,text\na,hi\n"), t), "no label column 'label'"),
    "split on a manifest without one": lambda t: (_evaluate(_manifest(t, "id,text,label\na,hi,joy\n"), t,
                                                            "--split", "test"), "has no 'split' column"),
    "duplicate ids": lambda t: (_evaluate(_manifest(t, "id,text,label\n1,hi,joy\n1,yo,joy\n"), t),
                                "--id-col dialogue,utterance"),
    "empty split": lambda t: (_evaluate(_manifest(t, "id,text,label,split\na,hi,joy,train\n"), t, "--split", "dev"),
                              "is empty"),
    "limit 0": lambda t: (_evaluate(_manifest(t, "id,text,label\na,hi,joy\n"), t, "--limit", "0"),
                          "--limit must be at least 1"),
    "garbage in predictions.jsonl": lambda t: (_evaluate(_with_garbage_run(t), t),
                                               "predictions.jsonl:2: not a prediction record"),
    "unknown option": lambda t: (["evaluate", "--max-frame", "3"], "did you mean '--max-frames'"),
    # Label sets are checked when loaded: a label the answer could not carry back, or a set that cannot work.
    "label ending in punctuation": lambda t: _labels(t, "tasks: [{task: emotion, labels: [joy, 'anger!']}]",
                                                     "label 'anger!' cannot be answered and read back"),
    "label with a leading space": lambda t: _labels(t, "tasks: [{task: emotion, labels: [joy, ' sad']}]",
                                                    "label ' sad' cannot be answered"),
    "labels differing in case": lambda t: _labels(t, "tasks: [{task: emotion, labels: [Joy, joy]}]",
                                                  "labels 'Joy' and 'joy' differ only in case"),
    "a null label": lambda t: _labels(t, "tasks: [{task: emotion, labels: [joy, null]}]",
                                      "label None is not a word (a NoneType)"),
    "a special-token label": lambda t: _labels(t, "tasks: [{task: emotion, labels: [joy, '<|im_end|>']}]",
                                               "label '<|im_end|>' cannot be answered"),
    "a task named rationale": lambda t: _labels(t, "tasks: [{task: rationale, labels: [a, b]}]",
                                                "'rationale' cannot name a task"),
    "two tasks with one name": lambda t: _labels(t, "tasks: [{task: e, labels: [a, b]}, {task: e, labels: [c, d]}]",
                                                 "two tasks named 'e'"),
    "a YAML alias bomb": lambda t: _labels(t, "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, "
                                              "*a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
                                              "tasks: [{task: emotion, labels: [*c, *c, *c]}]",
                                           "is not a word (a list)"),
    "5000 labels": lambda t: _labels(t, "tasks: [{task: emotion, labels: [" + ", ".join(f"l{i}" for i in range(5000))
                                     + "]}]", "has 5000 labels; at most 200"),
    "a 200k-character description": lambda t: _labels(t, "tasks: [{task: emotion, labels: [a, b], descriptions: "
                                                         "{a: " + "x" * 200_000 + "}}]", "over 300 characters"),
    "few-shot examples that are not mappings": lambda t: _labels(t, "tasks: [{task: e, labels: [a, b]}]\n"
                                                                    "examples: [1, x]", "`examples` must be a list"),
    # Transcripts and manifests that used to end in a traceback or a wrong reading.
    "a transcript line that is a list": lambda t: (_dialogue(_manifest(t, "[1, 2]\n", "t.jsonl")),
                                                   "t.jsonl:1: expected {speaker, start, end, text}"),
    "a transcript line that is a string": lambda t: (_dialogue(_manifest(t, '"str"\n', "t.jsonl")),
                                                     "t.jsonl:1: expected {speaker, start, end, text}"),
    "an infinite end time": lambda t: (_dialogue(_manifest(t, '{"speaker": "A", "start": 0, "end": Infinity, '
                                                              '"text": "hi"}\n', "t.jsonl")),
                                       "t.jsonl:1: start and end must be seconds within the recording"),
    "an end time of 1.7e308": lambda t: (_dialogue(_manifest(t, '{"start": 0, "end": 1.7e308, "text": "hi"}\n',
                                                             "t.jsonl")), "must be seconds within the recording"),
    "a NaN start time": lambda t: (_dialogue(_manifest(t, '{"start": NaN, "end": 1, "text": "hi"}\n', "t.jsonl")),
                                   "t.jsonl:1: start and end must be seconds"),
    "a ragged CSV": lambda t: (_evaluate(_manifest(t, "id,text,label\na,hi,joy,extra,more\nb,yo,joy\n"), t),
                               "m.csv:2: 5 fields where the header names 3"),
    "deeply nested JSON": lambda t: (_evaluate(_manifest(t, '{"id": "a", "text": ' + "[" * 5000 + "]" * 5000
                                                         + ', "label": "joy"}\n', "m.jsonl"), t),
                                     "m.jsonl:1: nested more than 100 levels deep"),
    "a manifest row nested 10,000 deep": lambda t: (_evaluate(_manifest(t, '{"id": "a"}\n' + '{"a":' * 10_000 + "1"
                                                                       + "}" * 10_000 + "\n", "m.jsonl"), t),
                                                    "m.jsonl:2: nested more than 100 levels deep"),
    "a context file nested 10,000 deep": lambda t: (["predict", "--transcript", "hi", "--context",
                                                     str(_manifest(t, "[" * 10_000 + "]" * 10_000 + "\n", "c.jsonl"))],
                                                    "c.jsonl:1: nested more than 100 levels deep"),
    "a config nested 10,000 deep": lambda t: (["predict", "--config", str(_manifest(t, "a: " + "[" * 10_000
                                                                                    + "]" * 10_000 + "\n", "c.yaml"))],
                                              "c.yaml: nested too deeply to read as YAML"),
    "engine args that are not YAML": lambda t: (["evaluate", "--engine-args", "[1,2"],
                                                "--engine-args must be a YAML/JSON mapping (expected ','"),
    "dataset options that are not YAML": lambda t: (["evaluate", "--dataset-options", "{a: [1"],
                                                    "--dataset-options must be a YAML/JSON mapping (expected ','"),
    "--out naming a file": lambda t: (_evaluate(_manifest(t, "id,text,label\na,hi,joy\n"), t, "--out",
                                                str(_manifest(t, "x", "taken.txt"))),
                                      "taken.txt: --out must name a folder, and this is a file"),
    "a folder as --video": lambda t: (["predict", "--model", str(t / "never-loaded"), "--video", str(t)],
                                      "is a folder, not a media file"),
    "/dev/zero as --video": lambda t: (["predict", "--model", str(t / "never-loaded"), "--video", "/dev/zero"],
                                       "/dev/zero: is a character device, not a media file"),
    "a FIFO as --video": lambda t: (["predict", "--model", str(t / "never-loaded"), "--video", _fifo(t / "p.mp4")],
                                    "p.mp4: is a named pipe (FIFO), not a media file"),
    "a template the sandbox refuses": lambda t: (["predict", "--transcript", "hi", "--template",
                                                  str(_manifest(t, '{% extends "base.jinja" %}{% block system %}'
                                                                   "{{ ''.__class__ }}{% endblock %}", "e.jinja"))],
                                                 "e.jinja: access to attribute '__class__' of 'str' object is unsafe"),
    "an empty id": lambda t: (_evaluate(_manifest(t, "id,text,label\n,hi,joy\nb,yo,joy\n"), t),
                              "row 1 has an empty id"),
    "a MELD CSV without a column": lambda t: (["evaluate", "--model", str(t / "never-loaded"), "--dataset", "meld",
                                               "--data-dir", str(_meld(t, "Sr No.,Utterance,Speaker,Emotion\n")),
                                               "--split", "dev", "--out", str(t / "run")],
                                              "no column Dialogue_ID, Utterance_ID, Sentiment"),
    "a MELD CSV with a non-numeric id": lambda t: (["evaluate", "--model", str(t / "never-loaded"), "--dataset",
                                                    "meld", "--data-dir", str(_meld(t, "Utterance,Speaker,Emotion,"
                                                                                     "Sentiment,Dialogue_ID,Utterance_ID"
                                                                                     "\nhi,A,joy,positive,one,0\n")),
                                                    "--split", "dev", "--out", str(t / "run")],
                                                   "dev_sent_emo.csv:2: Dialogue_ID and Utterance_ID must be whole"),
    # Flags and overrides checked before anything loads, with the range in the message.
    "batch size 0": lambda t: (["evaluate", "--batch-size", "0"], "--batch-size must be at least 1, not 0"),
    "batch size -1": lambda t: (["evaluate", "--batch-size", "-1"], "--batch-size must be at least 1, not -1"),
    "max frames -3": lambda t: (["predict", "--max-frames", "-3"], "--max-frames must be at least 1, not -3"),
    "max pixels -100": lambda t: (["predict", "--max-pixels", "-100"], "--max-pixels must be at least 784, not -100"),
    "forward batch size 0": lambda t: (["predict", "--forward-batch-size", "0"], "--forward-batch-size must be at "
                                                                                "least 1, not 0"),
    "media workers -2": lambda t: (["evaluate", "--media-workers", "-2"], "--media-workers must be at least 1"),
    "max new tokens 0": lambda t: (["evaluate", "--max-new-tokens", "0"], "--max-new-tokens must be at least 1"),
    "max text chars 0": lambda t: (["predict", "--max-text-chars", "0"], "--max-text-chars must be at least 1"),
    "max text chars -10": lambda t: (["predict", "--max-text-chars", "-10"], "--max-text-chars must be at least 1"),
    "an override that is not YAML": lambda t: (["predict", "max_frames=[1,2"], "override 'max_frames=[1,2': not a "
                                                                              "YAML value"),
    "unknown config key": lambda t: (["predict", "--config", str(_manifest(t, "labls: meld\n", "c.yaml"))],
                                     "did you mean 'labels'"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_cli_bad_input_is_one_line_naming_the_file(case, tmp_path, capsys):
    argv, expected = CASES[case](tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert expected in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
