"""The import contracts, checked by import-linter (a subprocess)."""
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO


def test_import_linter_keeps_every_contract():
    lint = Path(sys.executable).with_name("lint-imports")
    if not lint.exists():
        pytest.fail(f"{lint} is missing: install the dev extra (import-linter)")
    done = subprocess.run([str(lint)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "0 broken" in done.stdout
