"""`python -m mllm_mer.cli VERB ...`, the same as `mllm-mer VERB ...`."""
import sys

from mllm_mer.cli import main

sys.exit(main())
