"""HDF5 files of the embeddings and attention contracts, written atomically.

Arrays are gathered batch by batch into datasets chunked one image per chunk, in a temporary file
that is renamed over the final path only once it is complete: a reader never sees a half-written file.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np

COMPRESSION = {"compression": "gzip", "compression_opts": 4, "shuffle": True}


@contextmanager
def atomic_h5(path: str | Path) -> Iterator[h5py.File]:
    """Open `path + .tmp` for writing; rename it to `path` when the block ends without error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    try:
        with h5py.File(temporary, "w") as handle:
            yield handle
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def create_per_image(handle: h5py.File, name: str, n_images: int, shape: tuple[int, ...],
                     dtype) -> h5py.Dataset:
    """A dataset of `n_images` rows, one image per chunk, compressed."""
    return handle.create_dataset(name, shape=(n_images, *shape), dtype=dtype,
                                 chunks=(1, *shape) if n_images else None, **COMPRESSION)


def write_ids(handle: h5py.File, ids: list[str]) -> None:
    handle.create_dataset("ids", data=np.array(ids, dtype=object), dtype=h5py.string_dtype("utf-8"))


def read_ids(handle: h5py.File) -> list[str]:
    return [value.decode("utf-8") if isinstance(value, bytes) else value for value in handle["ids"][()]]


def set_attributes(handle: h5py.File, attributes: dict) -> None:
    for key, value in attributes.items():
        handle.attrs[key] = "" if value is None else value
