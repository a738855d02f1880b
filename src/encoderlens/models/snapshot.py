"""What a hub snapshot folder records about itself, and whether one is complete: standard library only,
so that the workflow can ask at plan time (every Snakemake start) without importing huggingface_hub.

`resources/models/<model>/hub_snapshot.json` holds the repo, the revision asked for, the commit it
resolved to, the family, and every file with its size and SHA-256.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

PROVENANCE = "hub_snapshot.json"
# huggingface_hub's own reading of HF_HUB_OFFLINE (constants._is_true, falling back to TRANSFORMERS_OFFLINE)
TRUE_VALUES = {"1", "ON", "YES", "TRUE"}


def hub_offline() -> bool:
    """Whether HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set now, read as huggingface_hub reads it."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().upper() in TRUE_VALUES


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def describe_files(folder: Path, names) -> dict:
    """{"sizes": {name: bytes}, "sha256": {name: hex}} of the files `names` of `folder`."""
    folder = Path(folder)
    return {"sizes": {name: (folder / name).stat().st_size for name in sorted(names)},
            "sha256": {name: file_sha256(folder / name) for name in sorted(names)}}


def snapshot_problem(folder, family: str, hub_id: str, revision: str, digests: bool = False) -> str | None:
    """Why `folder` is not a complete snapshot of `hub_id` at `revision` for `family`; None if it is.

    `revision` matches the revision the snapshot was taken at or the commit it resolved to. Every file
    listed must be there with its recorded size; with `digests`, with its recorded SHA-256 too (reading
    every byte: seconds per GB). A snapshot written before sizes and digests were recorded is checked
    for the presence of its files only.
    """
    folder = Path(folder)
    path = folder / PROVENANCE
    if not path.is_file():
        return f"{path} does not exist"
    try:
        record = json.loads(path.read_text())
    except ValueError as error:
        return f"{path} is not valid JSON ({error})"
    for key, wanted in (("hub_id", hub_id), ("family", family)):
        if record.get(key) != wanted:
            return f"{path} records {key} {record.get(key)!r}, not {wanted!r}"
    if revision not in (record.get("revision"), record.get("commit")):
        return (f"{path} records revision {record.get('revision')!r} (commit {record.get('commit')}), "
                f"not {revision!r}")
    files = record.get("files") or []
    if "config.json" not in files:
        return f"{path} lists no config.json among its files {files}"
    sizes, hashes = record.get("sizes") or {}, record.get("sha256") or {}
    for name in files:
        file = folder / name
        if not file.is_file():
            return f"{file} is missing"
        if name in sizes and file.stat().st_size != sizes[name]:
            return f"{file} has {file.stat().st_size} bytes; the snapshot recorded {sizes[name]}"
        if digests and name in hashes and file_sha256(file) != hashes[name]:
            return f"{file} does not match the SHA-256 the snapshot recorded"
    return None
