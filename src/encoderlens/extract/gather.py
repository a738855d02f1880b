"""Gather the chunks of one extraction into the one embeddings.h5 / attention.h5 pair.

A dataset too large for one job is extracted in chunks of manifest rows (`extraction.chunk_images`),
each a job of its own writing a complete pair of files for its rows (`extract_manifest(rows=...)`).
This concatenates them into files equal, dataset for dataset and attribute for attribute, to those
of one unchunked extraction: same ids, same arrays, same per-image HDF5 chunking and compression, same
stamps. The compressed HDF5 chunks (one image each) are copied as they are, without decoding and
re-encoding, so the gather costs little more than the bytes it moves.

Why a copy and not an HDF5 virtual dataset: a virtual dataset keeps reading the chunk files, so they
could never be removed (twice the disk was the alternative, not half), a moved or partly copied
results folder breaks it silently, and every reader and the atomic-rename contract would depend on
files that no rule names as inputs. The copy leaves a self-contained file, written atomically, and
the chunk files are temporary. No torch here: the gather job runs in the CPU analysis environment.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np
import pandas as pd

from encoderlens.extract.h5 import atomic_h5, create_per_image, read_ids, write_ids

# Datasets that are not one row per image: the ids themselves and the attention file's stored layers.
NOT_PER_IMAGE = ("ids", "layers")
COPY_BLOCK = 1024  # rows decoded at a time where a chunk's layout differs from the final file's


def select_images(manifest_path, splits: list[str] | None = None) -> pd.DataFrame:
    """The images an extraction covers, in manifest order: all, or those of `splits`. A chunk's rows
    index this list."""
    manifest = pd.read_parquet(manifest_path, columns=["image_id", "path", "split"])
    if splits is not None:
        manifest = manifest[manifest["split"].isin(splits)]
    if manifest.empty:
        raise ValueError(f"{manifest_path}: the manifest has no usable images"
                         + (f" in splits {splits}" if splits is not None else ""))
    return manifest


# attributes each chunk job may set for itself: `batch_size: auto` probes each job's own device, so two
# chunks on different GPUs may use different sizes (the values do not depend on it, beyond float noise)
PER_CHUNK_ATTRIBUTES = ("batch_size",)


def gather_chunks(chunks: Sequence[str | Path], final: str | Path, expected_ids: Sequence[str],
                  log=sys.stderr) -> None:
    """Concatenate the chunk files `chunks` (in order) into `final`, written atomically; their ids
    together must be `expected_ids`. Chunks holding no images (past the manifest's end) are skipped."""
    handles = [h5py.File(path, "r") for path in chunks]
    try:
        ids = _checked_ids(chunks, handles, list(expected_ids))
        filled = [(path, handle) for path, handle in zip(chunks, handles) if len(handle["ids"])]
        if not filled:
            raise ValueError(f"{chunks[0]}: every chunk is empty")
        first_path, first = filled[0]
        for path, handle in filled[1:]:
            _check_same_stamps(first_path, first, path, handle)
        per_image = _per_image_datasets(first)
        with atomic_h5(final) as out:
            write_ids(out, ids)
            for key, value in first.attrs.items():
                out.attrs[key] = value
            for key in PER_CHUNK_ATTRIBUTES:
                values = [handle.attrs[key] for _, handle in filled if key in handle.attrs]
                if len({np.asarray(value).item() for value in values}) > 1:
                    out.attrs[key] = np.asarray(values)  # one per chunk, in row order
            for name in _other_datasets(first):
                out.create_dataset(name, data=first[name][()])
            for name in per_image:
                source = first[name]
                target = create_per_image(out, name, len(ids), source.shape[1:], source.dtype)
                row = 0
                for path, handle in filled:
                    row = _copy_rows(handle[name], target, row, path, name)
        print(f"gathered {len(filled)} chunk(s), {len(ids)} images, into {final}", file=log)
    finally:
        for handle in handles:
            handle.close()


def gather_extraction(chunk_embeddings: Sequence[str], chunk_attention: Sequence[str], manifest_path,
                      embeddings_path, attention_path, splits: list[str] | None = None) -> None:
    """The chunked extraction's two files, checked against the images an unchunked one would cover."""
    expected = select_images(manifest_path, splits)["image_id"].astype(str).tolist()
    gather_chunks(chunk_embeddings, embeddings_path, expected)
    gather_chunks(chunk_attention, attention_path, expected)


def _checked_ids(paths, handles, expected: list[str]) -> list[str]:
    row = 0
    for path, handle in zip(paths, handles):
        ids = read_ids(handle)
        if ids != expected[row:row + len(ids)]:
            raise ValueError(f"{path}: its {len(ids)} ids are not rows {row} to {row + len(ids)} of the "
                             f"manifest's images; rerun this chunk (the manifest changed after it ran?)")
        row += len(ids)
    if row != len(expected):
        raise ValueError(f"{paths[-1]}: the chunks hold {row} images, the manifest {len(expected)}")
    return expected


def _per_image_datasets(handle: h5py.File) -> list[str]:
    names = []
    handle.visititems(lambda name, obj: names.append(name)
                      if isinstance(obj, h5py.Dataset) and name not in NOT_PER_IMAGE else None)
    return names


def _other_datasets(handle: h5py.File) -> list[str]:
    return [name for name in NOT_PER_IMAGE if name != "ids" and isinstance(handle.get(name), h5py.Dataset)]


def _check_same_stamps(first_path, first: h5py.File, path, handle: h5py.File) -> None:
    """Every chunk must come from the same model, settings and code: same attributes, same datasets."""
    keys = (set(first.attrs) | set(handle.attrs)) - set(PER_CHUNK_ATTRIBUTES)
    for key in sorted(keys):
        if key not in first.attrs or key not in handle.attrs or not np.array_equal(
                np.asarray(first.attrs[key]), np.asarray(handle.attrs[key])):
            raise ValueError(f"{path}: attribute {key!r} = {handle.attrs.get(key)!r} differs from "
                             f"{first_path} ({first.attrs.get(key)!r}); rerun the chunks with one config")
    if _per_image_datasets(first) != _per_image_datasets(handle):
        raise ValueError(f"{path}: datasets {_per_image_datasets(handle)} differ from {first_path}'s")
    for name in _other_datasets(first):
        if not np.array_equal(first[name][()], handle[name][()]):
            raise ValueError(f"{path}: /{name} differs from {first_path}'s")


def _copy_rows(source: h5py.Dataset, target: h5py.Dataset, row: int, path, name: str) -> int:
    """Copy `source`'s rows into `target` from `row`; return the next free row. Chunks laid out one
    image per HDF5 chunk with the same filters (as every extraction writes them) move compressed."""
    if source.shape[1:] != target.shape[1:] or source.dtype != target.dtype:
        raise ValueError(f"{path}: /{name} is {source.dtype}{source.shape[1:]} per image, expected "
                         f"{target.dtype}{target.shape[1:]}")
    n = source.shape[0]
    same_layout = (source.chunks == target.chunks and source.compression == target.compression
                   and source.compression_opts == target.compression_opts
                   and source.shuffle == target.shuffle)
    if same_layout:
        zeros = (0,) * (source.ndim - 1)
        for index in range(n):
            mask, data = source.id.read_direct_chunk((index, *zeros))
            target.id.write_direct_chunk((row + index, *zeros), data, mask)
    else:
        for start in range(0, n, COPY_BLOCK):
            stop = min(n, start + COPY_BLOCK)
            target[row + start:row + stop] = source[start:stop]
    return row + n
