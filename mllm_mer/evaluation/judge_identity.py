"""Who judged: the judge's model (id or path, a hash of its config and weights files, or the server's
model card), its backend and the hash of every judge prompt file. Written into run.json, metrics.json
and the report beside every judged number, so numbers from different judges are never mixed."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from mllm_mer.core.paths import user_cache
from mllm_mer.evaluation.judge import prompt_files

HASHED = ("*.json", "*.safetensors", "*.model", "*.txt", "*.jinja")  # config, tokenizer, template, weights
CHUNK = 1 << 24


def _file_hash(path: Path) -> str:
    """sha256 of a file, remembered by (path, size, mtime) so a large checkpoint is read once."""
    stat = path.stat()
    memo = user_cache() / "judge-hashes.json"
    key = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    known = json.loads(memo.read_text()) if memo.is_file() else {}
    if key not in known:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            while block := handle.read(CHUNK):
                digest.update(block)
        known[key] = digest.hexdigest()
        memo.parent.mkdir(parents=True, exist_ok=True)
        memo.write_text(json.dumps(known))
    return known[key]


def files_hash(folder: Path) -> str:
    """One hash over the checkpoint's config, tokenizer and weights files (names and contents)."""
    digest = hashlib.sha256()
    for pattern in HASHED:
        for path in sorted(folder.glob(pattern)):
            digest.update(f"{path.name}:{_file_hash(path)}\n".encode())
    return digest.hexdigest()


def local_checkpoint(model: str) -> Path | None:
    """The folder a model id or path loads from: the path itself, else the hub cache's snapshot."""
    if Path(model).is_dir():
        return Path(model)
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model, local_files_only=True))
    except Exception:  # not downloaded (or not a hub id): the id alone is recorded  # noqa: BLE001
        return None


def judge_identity(model: str, backend: str, served_card: dict[str, Any] | None = None) -> dict[str, Any]:
    """The judge's identity; `served_card`: the server's /v1/models entry (backend openai)."""
    found: dict[str, Any] = {"model": model, "backend": backend, "prompts": prompt_files()}
    if served_card is not None:
        found["server_model_card"] = {k: served_card.get(k) for k in ("id", "root", "owned_by", "max_model_len")}
    else:
        folder = local_checkpoint(model)
        found["files_sha256"] = files_hash(folder) if folder else "unknown (not a local checkpoint)"
    found["id"] = hashlib.sha256(json.dumps(found, sort_keys=True).encode()).hexdigest()[:16]
    return found


def same_judge(identities: list[dict[str, Any] | None]) -> bool:
    """Whether judged numbers may stand side by side: one judge (by its id) behind all of them."""
    return len({(i or {}).get("id") for i in identities}) <= 1
