"""Run records: the append-only predictions file and run.json (fingerprint + provenance).

`predictions.jsonl` is flushed and fsynced per batch, one line per sample id, so a run
killed at any point resumes with nothing lost or answered twice. `run.json` holds the
settings a resumed run must share (the fingerprint) and who ran what, when (provenance).
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mllm_mer.core.types import Prediction, Prompt, Sample
from mllm_mer.evaluation.fingerprint import changed_settings
from mllm_mer.media.audio import SAMPLE_RATE

PREDICTIONS = "predictions.jsonl"
SECRETS = ("api_key", "auth")  # never written to run records

# -- the append-only predictions file --------------------------------------------------------

def read_predictions(path: Path) -> dict[str, dict[str, Any]]:
    """Complete lines of a predictions file by sample id; a torn last line is cut off."""
    if not path.is_file():
        return {}
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):  # a write interrupted mid-line: drop the fragment
        with open(path, "r+b") as f:
            f.truncate(end)
    records = {}
    for number, line in enumerate(data[:end].decode("utf-8", errors="replace").splitlines(), 1):
        if line.strip():
            try:
                record = json.loads(line)
                records[record["id"]] = record
            except (json.JSONDecodeError, KeyError, TypeError):
                raise ValueError(f"{path}:{number}: not a prediction record; fix or delete that line, "
                                 "then rerun to resume") from None
    return records


def append_records(path: Path, records: list[dict[str, Any]]) -> None:
    payload = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, payload)
        os.fsync(fd)
    finally:
        os.close(fd)


def rewrite_records(path: Path, records: list[dict[str, Any]]) -> None:
    """Replace the file's rows atomically (a kill leaves the old file or the new one, never half)."""
    partial = path.with_name(path.name + ".rewrite")
    partial.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    os.replace(partial, path)


def record_for(sample: Sample, prediction: Prediction, prompt: Prompt | None = None,
               modalities: tuple[str, ...] = ()) -> dict[str, Any]:
    """One line of predictions.jsonl: the answer, the gold labels, and what the model was given."""
    record = {"id": sample.id, "gold": sample.gold, "prediction": prediction.to_dict(),
              "score": sample.metadata.get("score")}
    if sample.metadata.get("dialogue") is not None:  # paired tests in `compare` resample whole dialogues
        record["dialogue"] = sample.metadata["dialogue"]
    if prompt is not None:
        from mllm_mer.stages.prepare import present_modalities

        media = prompt.media
        record["inputs"] = {"modalities": present_modalities(sample, media, modalities),
                            "asr_transcript": media.transcript, "vocal_cues": media.vocal_cues or sample.vocal_cues,
                            "n_frames": len(media.frames) + (media.image is not None)}
        if media.vocal_features:  # the eGeMAPS numbers behind the cue words
            record["inputs"]["vocal_features"] = media.vocal_features
        if media.visual != "frames" and media.frames:
            record["inputs"]["visual"] = media.visual
        if media.audio is not None:  # what a model that hears received
            record["inputs"]["audio_seconds"] = round(len(media.audio) / SAMPLE_RATE, 2)
        if any(t.emotion for t in sample.context):  # the labels the model saw with earlier turns (dialogue runs)
            record["inputs"]["context_emotions"] = [t.emotion for t in sample.context]
    return record


# -- the run -----------------------------------------------------------------------------------

def _secret_name(word: str) -> bool:
    """`--api-key`, `api_key`, `--client.api_key`, `client.api-key`: every spelling of a secret option."""
    name = word.lstrip("-").rpartition(".")[2].replace("-", "_")
    return name in SECRETS


def masked_command(argv: list[str]) -> list[str]:
    """The command line with every secret's value masked, as a flag value, `--flag=value` or `key=value`."""
    masked = []
    for i, word in enumerate(argv):
        key, sep, _ = word.partition("=")
        if sep and _secret_name(key):
            masked.append(f"{key}=***")
        elif i and _secret_name(argv[i - 1]) and argv[i - 1].startswith("-") and "=" not in argv[i - 1]:
            masked.append("***")
        else:
            masked.append(word)
    return masked


def provenance(config: Any) -> dict[str, Any]:
    """Who ran what, when: everything needed to reproduce or question a run later."""
    from mllm_mer.config import to_flat

    settings = {k: ("***" if k in SECRETS and v else v) for k, v in to_flat(config).items()}
    command = masked_command(sys.argv)
    return {"package_version": _version(), "git_commit": _git_commit(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": command, "python": platform.python_version(), "host": platform.node(),
            "config": json.loads(json.dumps(settings, default=str))}


def for_download(run: dict[str, Any]) -> dict[str, Any]:
    """run.json as a user who did not start the server may see it: no launch command, host or settings."""
    provenance = {k: v for k, v in (run.get("provenance") or {}).items() if k not in ("command", "host", "config")}
    return {**run, "provenance": provenance}


def check_run_dir(out: Path, fingerprint: dict[str, Any], config: Any) -> None:
    """A new run writes run.json (fingerprint + provenance); a resumed one must match its fingerprint."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        what = "a file" if out.exists() else "under a file"
        raise ValueError(f"{out}: --out must name a folder, and this is {what}") from None
    run_file = out / "run.json"
    fingerprint = json.loads(json.dumps(fingerprint))
    if run_file.is_file():
        saved = json.loads(run_file.read_text())
        previous = saved.get("fingerprint", saved)  # runs written before provenance kept only the fingerprint
        changed = changed_settings(previous, fingerprint)
        if changed:
            raise ValueError(f"{out} holds a run with other settings ({', '.join(changed)}); "
                             "use another --out, or delete it to start over")
        if "fingerprint" in saved:
            saved.setdefault("resumed", []).append(time.strftime("%Y-%m-%dT%H:%M:%S%z"))
            run_file.write_text(json.dumps(saved, indent=2) + "\n")
    else:
        run_file.write_text(json.dumps({"fingerprint": fingerprint, "provenance": provenance(config)}, indent=2)
                            + "\n")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mllm-mer")
    except PackageNotFoundError:
        return "unknown"


def _git_commit() -> str | None:
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def finished_run(run_dir: str | None, out: str | None, verb: str, what: str):
    """(run info, label scheme, records) of a finished evaluate run to fit on."""
    if not run_dir or not out:
        raise ValueError(f"{verb} needs a run directory and --out: mllm-mer {verb} RUN --out {what}")
    info, scheme, records = run_records(run_dir)
    if str(info.get("split", "")).startswith("test"):
        print(f"warning: fitting on {info['split']!r}; fit on a dev split and report on test", file=sys.stderr)
    return info, scheme, records


def run_records(run_dir: str | Path):
    """(run info from metrics.json, label scheme, records) of a finished evaluate run."""
    from mllm_mer.core.labels import load_label_scheme

    run = Path(run_dir)
    metrics_file = run / "metrics.json"
    if not metrics_file.is_file():
        raise FileNotFoundError(f"{metrics_file}: not found (has the run finished?)")
    info = json.loads(metrics_file.read_text()).get("run", {})
    scheme = load_label_scheme(info.get("labels_source") or info["labels"])
    return info, scheme, list(read_predictions(run / "predictions.jsonl").values())
