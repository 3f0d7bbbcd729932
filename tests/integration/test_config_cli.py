"""The config tree through the command line as a user types it: help, listings, a YAML run, recipes by name."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import REPO, run_cli

from mllm_mer.cli import parse


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_app_help_imports_no_model_library():
    """`app.py --help` answers from the config tree alone: no model library is imported, so no model can load."""
    proc = subprocess.run([sys.executable, "-X", "importtime", str(REPO / "app.py"), "--help"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and "--model" in proc.stdout and "--max-upload-mb" in proc.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()}
    assert "mllm_mer.config" in imported  # the import log was read
    assert not {"torch", "gradio", "vllm", "transformers"} & imported


def test_ls_lists_what_is_bundled():
    out = run_cli("ls", "labels", timeout=120).stdout.split()
    assert "meld" in out and "iemocap4" in out
    out = run_cli("ls", "templates", timeout=120).stdout.split()
    assert "zero_shot" in out and "base" not in out


def test_evaluate_a_manifest_from_a_yaml_config_through_the_cli(tiny_model, tmp_path):
    """The manifest path through the CLI, as a user types it (it once crashed writing run.json)."""
    manifest = tmp_path / "m.csv"
    manifest.write_text("utt,dia,said,gold\nu1,a,Great news!,joy\nu2,a,Get out.,anger\nu3,b,Okay.,neutral\n")
    run = write_yaml(tmp_path / "run.yaml", {
        "model": str(tiny_model), "dtype": "float32", "dataset": "manifest", "data_dir": str(manifest),
        "id_col": "utt", "text_col": "said", "label_col": "gold", "dialogue_col": "dia", "labels": "meld",
        "template": "label_only", "out": str(tmp_path / "run")})
    proc = run_cli("evaluate", "--config", run, "limit=2")
    assert "2 samples" in proc.stdout and "emotion: accuracy" in proc.stdout
    fingerprint = json.loads((tmp_path / "run" / "run.json").read_text())["fingerprint"]
    assert fingerprint["data"]["id_col"] == "utt" and fingerprint["prompt"]["template"] == "label_only"


def test_a_bundled_recipe_is_found_by_name_from_any_folder(tmp_path):
    listed = run_cli("ls", "recipes", timeout=120, cwd=tmp_path)
    assert "tiny_lora" in listed.stdout.split()
    _, cfg, _ = parse(["finetune", "--config", "tiny_lora", "model=/m"])  # the name, not a path
    assert cfg.optim.output_dir == "runs/tiny-lora" and cfg.model.model == "/m"
    _, cfg, _ = parse(["finetune", "--config", "finetune/configs/tiny_lora.yaml"])
    assert cfg.optim.output_dir == "runs/tiny-lora"


# What bitsandbytes logs at import on CPUs with AVX512-BF16 and no `kernels` package (the package quiets it).
BNB_KERNEL_LINE = "Failed to load CPU gemm_4bit_forward from kernels-community: No module named 'kernels'"


@pytest.mark.parametrize("third_party_line", [False, True], ids=["as-is", "with-a-third-party-line"])
def test_a_grpo_recipe_that_cannot_sample_as_asked_is_refused_before_any_model_loads(tmp_path, third_party_line):
    env = None
    if third_party_line:
        # Forced on any CPU, before the package can quiet it: a machine-dependent line on stderr beside ours
        # must not fail a test of our message, which is found by its text, not by counting lines.
        (tmp_path / "sitecustomize.py").write_text(
            f"import logging\nlogging.getLogger('bitsandbytes.backends.cpu.ops').warning({BNB_KERNEL_LINE!r})\n")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    # A model that does not exist: had it been loaded first, the error would be about the model.
    proc = run_cli("finetune", "--config", "tiny_grpo", "use_vllm=true", f"output_dir={tmp_path / 'rl'}",
                   "model=no/such-model", check=False, timeout=120, env=env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    ours = [line for line in proc.stderr.splitlines() if line.startswith("mllm-mer finetune: error:")]
    assert len(ours) == 1 and "use_vllm" in ours[0] and "constrained: false" in ours[0], proc.stderr
    assert (BNB_KERNEL_LINE in proc.stderr) == third_party_line, proc.stderr


def test_finetune_refuses_a_grpo_recipe_that_cannot_work_before_importing_the_trainer():
    """The recipe's checks are light: the refusal comes before TRL, transformers or torch is imported."""
    probe = ("import sys\nfrom mllm_mer.cli import main\n"
             "code = main(['finetune', '--config', 'tiny_grpo', 'use_vllm=true', 'output_dir=unused', 'model=m'])\n"
             "print(code, sorted(m for m in ('trl', 'transformers', 'torch') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.stdout.split() == ["2", "[]"], proc.stdout + proc.stderr
    assert "use_vllm" in proc.stderr and "constrained: false" in proc.stderr
