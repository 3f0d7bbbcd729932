"""Uploads the app unpacks: zips opened safely, server paths shown as the user's own names."""
from __future__ import annotations

import zipfile
from pathlib import Path

MAX_UNZIPPED_BYTES = 2 * 1024 ** 3
UNZIP_RATIO, UNZIP_ALLOWANCE = 20, 64 * 1024 ** 2  # a zip may unpack to 20x its size, or to 64 MiB


def unpack_zip(archive: Path, root: Path) -> None:
    """Extract a zip safely: no absolute or `..` member, no link, at most MAX_UNZIPPED_BYTES."""
    try:
        with zipfile.ZipFile(archive) as z:
            members = z.infolist()
            # Clips barely compress: a zip that unpacks to many times its size is a bomb, not a batch.
            most = min(MAX_UNZIPPED_BYTES, max(UNZIP_ALLOWANCE, UNZIP_RATIO * archive.stat().st_size))
            if sum(m.file_size for m in members) > most:
                raise ValueError(f"{archive.name}: unpacks to more than {most // 1024 ** 2} MiB (at most "
                                 f"{UNZIP_RATIO}x the upload, or {UNZIP_ALLOWANCE // 1024 ** 2} MiB)")
            root.mkdir(parents=True)
            for member in members:
                target = (root / member.filename).resolve()
                if not target.is_relative_to(root.resolve()) or (member.external_attr >> 16) & 0o170000 == 0o120000:
                    raise ValueError(f"{archive.name}: member {member.filename!r} points outside the archive")
                z.extract(member, root)
    except zipfile.BadZipFile:
        raise ValueError(f"{archive.name}: not a readable zip file") from None


def user_paths(text: str, names: dict[str, str]) -> str:
    """An error message with server paths replaced by the names the user gave the files."""
    for path, name in names.items():
        if path:
            text = text.replace(path, name)
    return text


def manifest_rows(path: str) -> int:
    """The rows an uploaded manifest holds, read as the run reads it (run in a child: see `read_in_child`)."""
    from mllm_mer.datasets.tables import read_table

    return len(read_table(path, ragged=[]))


def read_in_child(manifest: Path) -> int:
    """Read an uploaded manifest once in a child process before the app's run reads it: a native reader
    that crashes on it takes the child down, and the app answers in one line."""
    from mllm_mer.app.isolated import run_isolated

    return run_isolated(f"{__name__}:manifest_rows", str(manifest), what=manifest.name)
