#!/usr/bin/env bash
# Sets up a local virtual environment (.venv) with everything the project and its tests need.
#   bash scripts/install.sh            CPU build of vLLM (this is what CI uses)
#   MLLM_MER_FLAVOUR=gpu bash scripts/install.sh    CUDA build of vLLM
# Versions come from the flavour's lock (requirements/<flavour>.lock, pip constraints; refreshed by
# scripts/lock.sh), so every machine gets what CI tested; MLLM_MER_LOCK=none installs from pyproject's open ranges.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
FLAVOUR=${MLLM_MER_FLAVOUR:-cpu}
LOCK=${MLLM_MER_LOCK:-requirements/$FLAVOUR.lock}
if [ "$LOCK" = none ]; then
    CONSTRAINTS=()
elif [ -f "$LOCK" ]; then
    CONSTRAINTS=(-c "$LOCK")
else
    echo "scripts/install.sh: no lock $LOCK (flavours: cpu, gpu; MLLM_MER_LOCK=none for the open ranges)" >&2
    exit 2
fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip_() {  # pip, minus this machine's noise about absent local index folders
    "$VENV/bin/python" -m pip "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}
PIP=pip_
$PIP install --quiet --upgrade pip
# pip (not uv/poetry): the CPU torch wheel (torch==X+cpu in the lock) is found through pip's find-links on this
# machine; elsewhere add PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu.
$PIP install --quiet "${CONSTRAINTS[@]}" -e ".[${FLAVOUR},train,app,ray,dev,docs]"

if [ "$FLAVOUR" = cpu ]; then
    # CUDA-built wheels that break `import vllm` beside the CPU torch; nothing here needs them. Triton
    # (pulled in by xgrammar) compiles GPU kernels only: vLLM's CPU build disables it, and at exit its bindings
    # print nanobind "leaked" reports from every server and engine process.
    $PIP uninstall --quiet -y torchaudio torchcodec triton >/dev/null 2>&1 || true
    # torchvision's PyPI build is CUDA-only: register its op schemas before it loads (see the hook).
    SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    cp scripts/torchvision_cpu_hook.py "$SITE/_mllm_mer_torchvision_hook.py"
    echo "import _mllm_mer_torchvision_hook" > "$SITE/_mllm_mer_torchvision_hook.pth"
fi

# Headless Chromium for the browser tests (Debian's build; Playwright must not download its own).
if ! command -v chromium >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "warning: chromium not found and cannot be installed here; browser tests will fail" >&2
    fi
fi
# espeak-ng synthesises the real speech the front-end tests measure (eGeMAPS cues, voice activity).
if ! command -v espeak-ng >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng >/dev/null
    else
        echo "warning: espeak-ng not found and cannot be installed here; the front-end speech tests will fail" >&2
    fi
fi
"$VENV/bin/python" -c "import vllm, transformers, torch; print('mllm-mer env ready: torch', torch.__version__, 'transformers', transformers.__version__, 'vllm', vllm.__version__)"
