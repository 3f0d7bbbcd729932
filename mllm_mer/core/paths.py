"""Where the project's data files live: the package's own copy, or a folder named by the environment."""
import os
from importlib.resources import files
from pathlib import Path


def bundled(name: str) -> Path:
    """The folder of a bundled data package (`prompts`, `finetune`; see mllm_mer.resources).

    Found through the import system, so it is the same in a wheel and an editable install, from any folder.
    """
    return Path(str(files(f"mllm_mer.resources.{name}")))


PROMPTS_DIR = Path(os.environ.get("MLLM_MER_PROMPTS") or bundled("prompts"))
# Fine-tuning recipes (`--config NAME` finds finetune/configs/NAME.yaml from any folder).
RECIPES_DIR = Path(os.environ.get("MLLM_MER_RECIPES") or bundled("finetune") / "configs")
ACCELERATE_DIR = bundled("finetune") / "accelerate"  # `accelerate launch --config_file` configs for several GPUs


ADAPTER_PROMPT = "prompt.yaml"  # beside adapter_config.json: the prompt an adapter was trained with
ADAPTER_LABELS = "labels.yaml"  # the label file itself, so the adapter is self-contained
ADAPTER_PROMPTS_ROUTE = "/v1/adapters/prompts"  # where `serve` tells each adapter's prompt (read-only)


def config_file(name: str | None) -> str | None:
    """A --config value as a path: the file itself, else the bundled recipe of that name."""
    if not name or Path(name).is_file():
        return name
    for candidate in (RECIPES_DIR / name, RECIPES_DIR / f"{name}.yaml", RECIPES_DIR / Path(name).name):
        if candidate.is_file():
            return str(candidate)
    return name  # the loader says it is missing


def recipes() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def user_cache() -> Path:
    """$MLLM_MER_CACHE, else ~/.cache/mllm-mer: caches and what `demo` builds."""
    return Path(os.environ.get("MLLM_MER_CACHE") or Path.home() / ".cache" / "mllm-mer").expanduser()
