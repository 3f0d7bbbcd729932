#!/usr/bin/env bash
# The load-sensitive tests (engine and server start and stop, kills, concurrency, the browser) with a second
# CPU-heavy process beside them: one busy process per core, for as long as the tests run.
#   bash scripts/under_load.sh            # the default set below
#   bash scripts/under_load.sh tests/integration/test_serve.py -k stopping
set -euo pipefail
cd "$(dirname "$0")/.."
tests=("$@")
if [ ${#tests[@]} -eq 0 ]; then
  tests=(tests/integration/test_process_hygiene.py tests/integration/test_serve_start.py
         "tests/integration/test_serve.py::test_stopping_serve_leaves_no_orphan_and_no_leak_warnings"
         tests/integration/test_app.py tests/browser/test_app_browser.py)
fi
cores=$(nproc)
hogs=()
for _ in $(seq "$cores"); do
  .venv/bin/python -c "while True: pass" &
  hogs+=($!)
done
trap 'kill "${hogs[@]}" 2>/dev/null || true' EXIT
echo "under load: $cores busy processes beside the tests (load average before: $(cut -d' ' -f1 /proc/loadavg))"
.venv/bin/python -m pytest -p no:cacheprovider "${tests[@]}"
echo "load average after: $(cut -d' ' -f1 /proc/loadavg)"
