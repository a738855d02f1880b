"""Per-batch shards that make extraction resumable.

Each finished batch is one `.npz` (its arrays in the dtypes the HDF5 files store) written to a temporary name, flushed to disk (fsync) and renamed, so
a shard on disk is complete even after a power loss. A killed run finds the shards of the batches it
finished and starts after them; the fingerprint makes sure it resumes only work done for the same
images, model and settings. Each shard is read back in full before it counts as done (a file system
that lost its data can leave a shard empty or truncated): the first unreadable one is discarded with a
log line naming it, with every later one, and recomputed. Every error names the file.
"""

from __future__ import annotations

import json
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np

from encoderlens.tables import durable_write

FINGERPRINT = "fingerprint.json"
RESOLVED = "resolved.json"  # settings resolved at run time (batch_size: auto), which a resume reuses


class ShardStore:
    def __init__(self, folder: str | Path, fingerprint: dict):
        self.folder = Path(folder)
        self.fingerprint = fingerprint

    def open(self, log=None) -> int:
        """Prepare the folder; return how many leading batches are already done (and readable)."""
        log = log or sys.stderr
        stamp = self.folder / FINGERPRINT
        if self.folder.exists() and _read_stamp(stamp) != self.fingerprint:
            shutil.rmtree(self.folder)
        if not self.folder.exists():
            self.folder.mkdir(parents=True)
            _atomic_write_text(stamp, json.dumps(self.fingerprint, sort_keys=True))
            return 0
        done = 0
        while self.path(done).exists():
            problem = shard_problem(self.path(done))
            if problem:
                later = sorted(self.folder.glob("batch_*.npz"))
                later = [path for path in later if path.name >= self.path(done).name]
                print(f"{self.path(done)}: {problem}; discarded with {len(later) - 1} later shard(s), "
                      f"recomputing from batch {done}", file=log)
                for path in later:
                    path.unlink()
                break
            done += 1
        return done

    def record(self, key: str, value) -> None:
        """Remember a setting the run resolved itself, for a resumed run to reuse."""
        values = _read_stamp(self.folder / RESOLVED) or {}
        _atomic_write_text(self.folder / RESOLVED, json.dumps(values | {key: value}, sort_keys=True))

    def recorded(self, key: str):
        return (_read_stamp(self.folder / RESOLVED) or {}).get(key)

    def path(self, batch_index: int) -> Path:
        return self.folder / f"batch_{batch_index:07d}.npz"

    def write(self, batch_index: int, arrays: dict[str, np.ndarray]) -> None:
        final = self.path(batch_index)
        durable_write(final, lambda handle: np.savez(handle, **arrays), "shard",
                      temporary=final.with_name(final.name + ".tmp.npz"))

    def read(self, batch_index: int) -> dict[str, np.ndarray]:
        path = self.path(batch_index)
        try:
            return _load(path)
        except (OSError, EOFError, ValueError, zipfile.BadZipFile) as error:
            raise ValueError(f"{path}: unreadable shard ({type(error).__name__}: {error}); delete it "
                             f"and rerun to recompute it") from error

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def shard_problem(path: Path) -> str | None:
    """Why the shard at `path` cannot be used (empty, truncated, corrupt, ragged), or None."""
    try:
        arrays = _load(path)
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as error:
        return f"unreadable shard ({type(error).__name__}: {error})"
    if not arrays:
        return "shard holds no arrays"
    rows = {len(values) if values.ndim else -1 for values in arrays.values()}
    if len(rows) != 1 or rows == {-1} or rows == {0}:
        return f"shard arrays disagree on the number of images ({sorted(rows)})"
    return None


def _load(path: Path) -> dict[str, np.ndarray]:
    # reading every array checks each member's CRC, so a shard cut short or damaged is caught here
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def _read_stamp(stamp: Path):
    """The fingerprint a shard folder was made for; None when missing or unreadable (then the folder
    is discarded as if it belonged to other settings)."""
    try:
        return json.loads(stamp.read_text())
    except (OSError, ValueError):
        return None


def _atomic_write_text(path: Path, text: str) -> None:
    durable_write(path, lambda handle: handle.write(text.encode("utf-8")), "settings stamp",
                  temporary=path.with_name(path.name + ".tmp"))
