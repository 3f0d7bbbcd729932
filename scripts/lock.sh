#!/usr/bin/env bash
# Refreshes the install locks: pip constraints files that scripts/install.sh (and so CI) installs from, while
# pyproject.toml keeps open ranges for people installing the library into their own environment.
#   bash scripts/lock.sh            both flavours
#   bash scripts/lock.sh cpu        requirements/cpu.lock: the environment the suite passed in ($VENV, default .venv),
#                                   narrowed to what the project and its extras resolve to
#   bash scripts/lock.sh gpu        requirements/gpu.lock: a fresh resolution of the CUDA flavour against PyPI
# Refresh the CPU lock after changing a range or upgrading the tested environment, run the suite, then commit both.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
EXTRAS="train,app,ray,dev,docs"
OUT=requirements
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$OUT"

pip_() {  # pip, minus this machine's noise about absent local index folders
    "$VENV/bin/python" -m pip "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}

# A pip --report (what a resolution installs) as name==version lines, the project itself left out.
report_to_lock() {
    "$VENV/bin/python" - "$1" "$2" <<'PY'
import json
import sys

report, header = sys.argv[1], sys.argv[2]
pins = sorted((item["metadata"]["name"].lower(), item["metadata"]["version"])
              for item in json.load(open(report))["install"] if item["metadata"]["name"].lower() != "mllm-mer")
print("\n".join([header, *(f"{name}=={version}" for name, version in pins)]))
PY
}

lock_cpu() {
    # The tested versions constrain a resolution of the project, so the lock holds exactly what the project needs,
    # including what scripts/install.sh removes after installing (torchaudio, torchcodec, triton).
    pip_ freeze --exclude-editable > "$TMP/tested.txt"
    pip_ install --quiet --dry-run --ignore-installed --no-build-isolation -c "$TMP/tested.txt" \
        --report "$TMP/cpu.json" ".[cpu,$EXTRAS]"
    report_to_lock "$TMP/cpu.json" "# CPU flavour: the tested environment's versions; made by scripts/lock.sh cpu. The
# torch build is the CPU one (+cpu), from a find-links folder or https://download.pytorch.org/whl/cpu." \
        > "$OUT/cpu.lock"
}

lock_gpu() {
    # PyPI alone: this machine's pip configuration (a local CPU torch in find-links) must not leak into it.
    env -u PIP_FIND_LINKS -u PIP_CONSTRAINT PIP_CONFIG_FILE=/dev/null "$VENV/bin/python" -m pip install --quiet \
        --dry-run --ignore-installed --no-build-isolation --report "$TMP/gpu.json" ".[gpu,$EXTRAS]"
    report_to_lock "$TMP/gpu.json" "# GPU flavour (CUDA wheels from PyPI, Linux x86_64, CPython $("$VENV/bin/python" -c \
'import sys; print(*sys.version_info[:2], sep=".")')): a resolution against PyPI; made by scripts/lock.sh gpu." \
        > "$OUT/gpu.lock"
}

for flavour in ${*:-cpu gpu}; do
    case $flavour in
        cpu | gpu) "lock_$flavour" ;;
        *) echo "scripts/lock.sh: unknown flavour '$flavour' (cpu or gpu)" >&2; exit 2 ;;
    esac
    echo "wrote $OUT/$flavour.lock ($(grep -vc '^#' "$OUT/$flavour.lock") pins)"
done
