#!/usr/bin/env bash
# The GPU tier (pytest -m gpu) on a CUDA machine that already has torch, transformers, peft and
# accelerate: installs this package without touching them, builds the tiny checkpoint offline and
# runs the GPU-marked tests. A machine without network can be given wheels of what it lacks in
# $WHEELS (default runs/gpu-wheels); what is still missing is printed, not hidden.
#   bash scripts/gpu_check.sh [pytest args]
set -u
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
WHEELS=${WHEELS:-runs/gpu-wheels}
missing() {
python - <<'PY'
import importlib
needed = {"av": "av", "jinja2": "jinja2", "jsonschema": "jsonschema", "referencing": "referencing",
          "jsonschema_specifications": "jsonschema-specifications", "rpds": "rpds-py", "attrs": "attrs",
          "xgrammar": "xgrammar", "datasets": "datasets", "yaml": "pyyaml", "sklearn": "scikit-learn",
          "tqdm": "tqdm", "PIL": "pillow", "safetensors": "safetensors", "tokenizers": "tokenizers",
          "psutil": "psutil", "matplotlib": "matplotlib", "torchmetrics": "torchmetrics",
          "lightning_utilities": "lightning-utilities", "srt": "srt", "webvtt": "webvtt-py", "pytest": "pytest",
          "pytest_timeout": "pytest-timeout", "tvm_ffi": "apache-tvm-ffi", "dill": "dill",
          "multiprocess": "multiprocess", "xxhash": "xxhash", "pyarrow": "pyarrow", "pandas": "pandas",
          "ftfy": "ftfy", "wcwidth": "wcwidth", "openai": "openai", "distro": "distro", "jiter": "jiter",
          "sniffio": "sniffio", "httpx": "httpx", "scipy": "scipy", "joblib": "joblib",
          "threadpoolctl": "threadpoolctl", "numpy": "numpy"}
for module, dist in needed.items():
    try:
        importlib.import_module(module)
    except Exception:
        print(dist)
PY
}
python -c "import platform, torch, transformers, peft, accelerate; print('python', platform.python_version(), 'torch', torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'NO CUDA', 'transformers', transformers.__version__, 'peft', peft.__version__, 'accelerate', accelerate.__version__)"
python -c "import deepspeed" 2>/dev/null && echo "deepspeed present" || echo "deepspeed absent"
for dist in $(missing); do
    [ -d "$WHEELS" ] && python -m pip install -q --no-index --no-deps --find-links "$WHEELS" "$dist" 2>&1 | grep -v "^$" | tail -1
done
echo "still missing: $(missing | tr '\n' ' ')"
python -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | tail -2
python -m pytest -m gpu -p no:cacheprovider -o addopts="" -q "${@:-tests}" 2>&1 | tail -80
