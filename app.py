"""Launcher: `python app.py --model runs/tiny-model --backend vllm` (the same as `mllm-mer app ...`)."""
import sys

from mllm_mer.cli import main

if __name__ == "__main__":
    sys.exit(main(["app", *sys.argv[1:]]))
