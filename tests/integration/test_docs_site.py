"""The docs site builds in strict mode, and the README's first steps run as pasted (offline, tiny model)."""
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import run_cli

ROOT = Path(__file__).resolve().parents[2]


def test_the_docs_site_builds_in_strict_mode_with_the_generated_options_reference(tmp_path):
    site = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
                           "-d", str(site)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    options = (site / "reference" / "options" / "index.html").read_text()
    assert "--max-new-tokens" in options and "--keyframe-snap" in options
    assert "Benchmark results" in (site / "results" / "index.html").read_text()  # RESULTS.md included
    assert "Test tiers" in (site / "contributing" / "index.html").read_text()  # CONTRIBUTING.md included


def _first_steps() -> list[list[str]]:
    """The `mllm-mer` commands of the README's first-steps block, continuation lines joined."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## First steps.*?```bash\n(.*?)```", text, re.S).group(1).replace("\\\n", " ")
    return [shlex.split(line.split("#", 1)[0] if "  #" in line else line)[1:]
            for line in block.splitlines() if line.startswith("mllm-mer ")]


def test_the_readme_first_steps_run_as_pasted_on_the_demo_files(tmp_path):
    commands = _first_steps()
    assert [c[0] for c in commands] == ["demo", "predict", "predict"]
    for args in commands:
        proc = run_cli(*[a.replace("runs/demo", str(tmp_path / "demo")) for a in args], cwd=tmp_path)
        prediction = json.loads(proc.stdout)
        assert prediction["ok"] and prediction["tasks"]["emotion"]["label"], proc.stderr[-2000:]
        if args[0] == "demo":
            evidence = json.loads(proc.stderr[proc.stderr.index("{"):proc.stderr.index("}\n") + 1])
            if shutil.which("espeak-ng") is None:
                pytest.fail("espeak-ng is missing (scripts/install.sh installs it): the demo clip has no speech")
            assert "speaks the transcript" in proc.stderr
            assert "no clear speech found" not in evidence["vocal_cues"] and "speech" in evidence["vocal_cues"]
