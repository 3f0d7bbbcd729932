"""The released package runs on its own: a wheel built from this tree, installed into a fresh venv and run from a
folder outside the repository, lists its label sets and runs `demo` (its data ships inside it)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from helpers import REPO

pytestmark = pytest.mark.slow

# The fresh venv sees the tested environment's dependencies through this module (run by a .pth file at start-up):
# their folder on sys.path and their .pth hooks, minus the editable install of the project itself, which would
# otherwise answer for anything the wheel lacks.
DEPS_SITE = '''"""The tested environment's packages, without its editable install of mllm-mer."""
import os
import sys

DEPS = {deps!r}
sys.path.append(DEPS)
for name in sorted(os.listdir(DEPS)):
    if name.endswith(".pth") and not name.startswith("__editable__"):
        for line in open(os.path.join(DEPS, name)).read().splitlines():
            if line.startswith(("import ", "import\\t")):
                exec(line)
            elif line.strip() and not line.startswith("#") and os.path.isdir(os.path.join(DEPS, line.strip())):
                sys.path.append(os.path.join(DEPS, line.strip()))
'''


def _run(cmd: list, cwd: Path, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{cmd} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path, dict]:
    """(the fresh venv, a working folder outside the repository, the environment to run it in)."""
    tmp = tmp_path_factory.mktemp("wheel")
    # sdist first, then the wheel from the sdist (as an index would build it): both must carry the data, and the
    # repository is left without a build/ folder.
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", tmp / "dist", REPO], cwd=tmp)
    (wheel,) = (tmp / "dist").glob("mllm_mer-*.whl")
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp)
    site = Path(_run([venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     cwd=tmp).stdout.strip())
    (site / "_mllm_mer_test_deps.py").write_text(DEPS_SITE.format(deps=sysconfig.get_paths()["purelib"]))
    (site / "_mllm_mer_test_deps.pth").write_text("import _mllm_mer_test_deps\n")
    _run([sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "--no-deps", "--no-index",
          wheel], cwd=tmp)
    work = tmp / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "MLLM_MER_PROMPTS", "MLLM_MER_RECIPES", "VIRTUAL_ENV")}
    env["MLLM_MER_CACHE"] = str(tmp / "cache")
    return venv, work, env


def test_the_wheel_carries_the_data_and_not_the_repository(installed):
    venv, work, env = installed
    where = _run([venv / "bin" / "python", "-c",
                  "import mllm_mer; from mllm_mer.core import paths; "
                  "print(mllm_mer.__file__); print(paths.PROMPTS_DIR); print(paths.RECIPES_DIR); "
                  "print(paths.ACCELERATE_DIR)"], cwd=work, env=env).stdout.split()
    for path in where:
        assert Path(path).is_relative_to(venv), f"{path} is not inside the fresh venv {venv}"
        assert not Path(path).resolve().is_relative_to(REPO.resolve()), path
    package, prompts, recipes, accelerate = map(Path, where)
    for installed_dir, source in ((prompts, "prompts"), (recipes, "finetune/configs"),
                                  (accelerate, "finetune/accelerate")):  # every data file, in every subfolder
        assert _data_files(installed_dir) == _data_files(REPO / source), source
    assert (prompts / "labels" / "meld.yaml").is_file() and (recipes / "tiny_lora.yaml").is_file()


def _data_files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".py", ".pyc")}


def test_ls_labels_from_outside_the_repository(installed):
    venv, work, env = installed
    listed = _run([venv / "bin" / "mllm-mer", "ls", "labels"], cwd=work, env=env).stdout.split()
    assert listed == sorted(p.stem for p in (REPO / "prompts" / "labels").glob("*.yaml"))
    assert "meld" in listed


def test_demo_from_outside_the_repository(installed):
    venv, work, env = installed
    done = _run([venv / "bin" / "mllm-mer", "demo"], cwd=work, env=env, timeout=600)
    answer = json.loads(done.stdout)
    assert answer["sample_id"] == "demo" and answer["ok"] is True, answer
    emotion = answer["tasks"]["emotion"]
    assert emotion["label"] in emotion["probabilities"]
    assert set(emotion["probabilities"]) == {"neutral", "joy", "sadness", "anger", "surprise", "fear", "disgust"}
    assert "demo clip:" in done.stderr and "random-weight tiny model" in done.stderr
    assert (Path(env["MLLM_MER_CACHE"]) / "demo" / "tiny-qwen2-vl" / "config.json").is_file()
