"""Packaging of the data folders; everything else is in pyproject.toml.

The project's data stays in the repository's top-level folders, where users read and edit it, and ships
inside the package: each folder below is mapped onto a subpackage of `mllm_mer.resources` (with its
subfolders, so a new one such as `prompts/judges/` ships without a change here). pyproject.toml alone
cannot list these mapped packages beside the discovered ones, hence this file.
"""
from pathlib import Path

from setuptools import find_packages, setup

DATA = {
    "mllm_mer.resources.prompts": "prompts",
    "mllm_mer.resources.finetune": "finetune",  # configs/ (recipes), accelerate/ and the train entry
}


def data_packages() -> dict[str, str]:
    """Each data folder and its subfolders as (package name -> folder)."""
    found = dict(DATA)
    for package, folder in DATA.items():
        for sub in sorted(Path(folder).rglob("*")):
            if sub.is_dir() and "__pycache__" not in sub.parts:
                found[package + "." + ".".join(sub.relative_to(folder).parts)] = sub.as_posix()
    return found


data = data_packages()
setup(
    packages=[*find_packages(include=["mllm_mer*"]), *data],
    package_dir=data,
    package_data={package: ["*"] for package in data},
)
