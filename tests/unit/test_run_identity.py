"""A run's identity (evaluation/fingerprint.py): settings at their defaults are left out, with a schema
version, and a run.json written before that rule still resumes. The two fixtures are run.json files as
the code before the rule wrote them (paths replaced by {MANIFEST} and {OUT}). No model is loaded."""
import json
from pathlib import Path

import pytest

from mllm_mer.config import EvaluateConfig, build
from mllm_mer.datasets import load_configured
from mllm_mer.evaluation.fingerprint import SCHEMA, changed_settings, fingerprint
from mllm_mer.evaluation.records import check_run_dir
from mllm_mer.pipeline.build import build_run

FIXTURES = Path(__file__).parent / "fixtures"
MODEL = "Qwen/Qwen2.5-VL-3B-Instruct"
# The settings each fixture's run was started with (besides the manifest, the model and labels meld).
SETTINGS = {
    "defaults": {},
    "changed": {"template": "label_only", "modalities": ["text"], "samples": 3, "temperature": 0.5,
                "visual": "faces", "face_margin": 0.5, "keyframe_snap": 0.0, "max_frames": 4, "text_col": "text",
                "probabilities": True, "delimiter": ",", "limit": 2},
}


def _manifest(tmp_path: Path) -> Path:
    path = tmp_path / "manifest.csv"
    path.write_text("id,text,label\na,I am so happy today,joy\nb,This is terrible,anger\nc,Oh no,fear\n")
    return path


def _run(manifest: Path, out: Path, **settings):
    """(config, this code's identity of the run) without loading a model."""
    cfg = build(EvaluateConfig, dataset="manifest", data_dir=str(manifest), out=str(out), model=MODEL,
                labels="meld", **settings)
    split = load_configured(cfg.data, cfg.run.split, cfg.prompt.labels, limit=cfg.run.limit)
    built = build_run(cfg, default_labels=split.labels, with_resources=False)
    return cfg, built, fingerprint(cfg, built)


def _old_run_dir(tmp_path: Path, name: str) -> tuple[Path, Path]:
    manifest, out = _manifest(tmp_path), tmp_path / name
    out.mkdir()
    text = (FIXTURES / f"run_before_schema_{name}.json").read_text()
    (out / "run.json").write_text(text.replace("{MANIFEST}", str(manifest)).replace("{OUT}", str(out)))
    return manifest, out


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_a_run_written_before_the_schema_resumes_under_its_old_identity(tmp_path, name):
    manifest, out = _old_run_dir(tmp_path, name)
    before = json.loads((out / "run.json").read_text())
    assert "schema" not in before["fingerprint"]
    cfg, _, current = _run(manifest, out, **SETTINGS[name])
    check_run_dir(out, current, cfg)  # raises if the run would not resume
    after = json.loads((out / "run.json").read_text())
    assert after["fingerprint"] == before["fingerprint"] and len(after["resumed"]) == 1


def test_an_old_run_with_other_settings_is_still_refused_naming_them(tmp_path):
    manifest, out = _old_run_dir(tmp_path, "changed")
    cfg, _, current = _run(manifest, out, **{**SETTINGS["changed"], "samples": 1, "visual": "frames"})
    with pytest.raises(ValueError, match=r"holds a run with other settings \(media, strategy\)"):
        check_run_dir(out, current, cfg)


def test_settings_at_their_defaults_are_left_out_of_the_identity(tmp_path):
    manifest = _manifest(tmp_path)
    _, _, identity = _run(manifest, tmp_path / "run")
    assert identity == {"schema": SCHEMA, "dataset": "manifest", "data_dir": str(manifest.resolve()),
                        "data": {"dataset": "manifest", "data_dir": str(manifest)}, "labels": "meld",
                        "tasks": ["emotion", "sentiment"], "model": MODEL}
    _, _, explicit = _run(manifest, tmp_path / "run", text_col="text", max_steps=3, visual="frames",
                          media_cache_gb=0.5)  # defaults said out loud, and the cache (never identity)
    assert explicit == identity
    _, _, other = _run(manifest, tmp_path / "run", visual="both", text_col="")
    assert changed_settings(identity, other) == ["data", "media"]
    assert other["media"] == {"visual": "both"} and other["data"]["text_col"] == ""


def test_a_new_run_resumes_and_a_changed_one_is_refused(tmp_path):
    manifest, out = _manifest(tmp_path), tmp_path / "run"
    cfg, _, first = _run(manifest, out, template="label_only")
    check_run_dir(out, first, cfg)
    check_run_dir(out, _run(manifest, out, template="label_only")[2], cfg)
    with pytest.raises(ValueError, match=r"other settings \(prompt\)"):
        check_run_dir(out, _run(manifest, out)[2], cfg)


def test_run_json_never_holds_a_bare_nan(tmp_path):
    """Options refuse NaN (test_config_validation); a NaN from a file (a calibration's temperature) is
    refused before run.json is written, since a bare NaN is not JSON."""
    from dataclasses import replace

    manifest = _manifest(tmp_path)
    cfg, built, _ = _run(manifest, tmp_path / "run")
    bad = replace(built, setup=replace(built.setup, temperatures={"emotion": float("nan")}))
    with pytest.raises(ValueError, match="NaN or infinite"):
        fingerprint(cfg, bad)
    assert not (tmp_path / "run").exists()
