"""Per-batch shards that make extraction resumable.

Each finished batch is one `.npz` written to a temporary name and renamed, so a shard on disk is
always complete. A killed run finds the shards of the batches it finished and starts after them; the
fingerprint makes sure it resumes only work done for the same images, model and settings.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

FINGERPRINT = "fingerprint.json"


class ShardStore:
    def __init__(self, folder: str | Path, fingerprint: dict):
        self.folder = Path(folder)
        self.fingerprint = fingerprint

    def open(self) -> int:
        """Prepare the folder; return how many leading batches are already done."""
        stamp = self.folder / FINGERPRINT
        if self.folder.exists():
            previous = json.loads(stamp.read_text()) if stamp.exists() else None
            if previous != self.fingerprint:
                shutil.rmtree(self.folder)
        if not self.folder.exists():
            self.folder.mkdir(parents=True)
            _atomic_write_text(stamp, json.dumps(self.fingerprint, sort_keys=True))
            return 0
        done = 0
        while self.path(done).exists():
            done += 1
        return done

    def path(self, batch_index: int) -> Path:
        return self.folder / f"batch_{batch_index:07d}.npz"

    def write(self, batch_index: int, arrays: dict[str, np.ndarray]) -> None:
        final = self.path(batch_index)
        temporary = final.with_name(final.name + ".tmp.npz")
        np.savez(temporary, **arrays)
        os.replace(temporary, final)

    def read(self, batch_index: int) -> dict[str, np.ndarray]:
        with np.load(self.path(batch_index), allow_pickle=False) as data:
            return {key: data[key] for key in data.files}

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _atomic_write_text(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)
