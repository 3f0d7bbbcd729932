"""Where the project's data files live (overridable for installed copies)."""
import os
from pathlib import Path

PROMPTS_DIR = Path(os.environ.get("MLLM_MER_PROMPTS", Path(__file__).resolve().parents[2] / "prompts"))
