"""Preparing one label level for a probe: missing labels, rare classes, the split, standardisation.

Labels are strings. "" (and None/NaN, which only a CSV read without ``keep_default_na=False``
produces) means missing: those samples are left out of that level and are never a class. "NA" is
Namibia, a class like any other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

MISSING = ""


def level_labels(values) -> tuple[np.ndarray, np.ndarray]:
    """(labels as str, present mask). Missing: "", None or NaN; everything else is str()-ed."""
    series = pd.Series(values, dtype=object)
    missing = (series.isna() | (series == MISSING)).to_numpy(dtype=bool)
    labels = series.where(~missing, MISSING).astype(str).to_numpy(dtype=object)
    return labels, ~missing


@dataclass
class LevelSplit:
    """The samples one level is probed on. Index arrays point into the full (N,) sample order."""

    train: np.ndarray        # sorted sample indices
    test: np.ndarray         # sorted sample indices
    labels: np.ndarray       # (N,) str, "" where missing
    classes: np.ndarray      # classes kept (each has >= 1 training sample), sorted
    n_missing: int           # samples with no label at this level
    dropped_samples: int     # labelled samples in classes with < min_per_class samples
    dropped_classes: int
    stratified: bool         # scikit-learn's stratified split (False: the per-class fallback)


def drop_rare(labels: np.ndarray, present: np.ndarray, min_per_class: int) -> tuple[np.ndarray, int, int]:
    """Keep mask over samples: present and in a class with >= min_per_class samples.

    Returns (keep, dropped_samples, dropped_classes); missing samples count in neither.
    """
    classes, counts = np.unique(labels[present], return_counts=True)
    rare = classes[counts < min_per_class]
    keep = present & ~np.isin(labels, rare)
    return keep, int(counts[counts < min_per_class].sum()), len(rare)


def stratified_split(y: np.ndarray, test_size: float = 0.2,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray, bool]:
    """Positions (train, test, stratified) of a seeded stratified split of `y` with every class in train.

    First scikit-learn's ``train_test_split(stratify=y)``. It refuses a class with one sample and a
    test set smaller than the number of classes (many classes of two, say), and with a large
    test_size it can put all of a small class in test; in those cases the fallback splits each class
    on its own: a class of n sends floor(test_size * n + u) of its samples to test (u ~ U[0, 1), so
    the expected test fraction is test_size), never more than n - 1, so every class keeps one
    training sample (a class of one is train-only).
    """
    if not 0 < test_size < 1:
        raise ValueError(f"test_size must be in (0, 1), not {test_size}")
    y = np.asarray(y)
    positions = np.arange(len(y))
    classes, codes, counts = np.unique(y, return_inverse=True, return_counts=True)
    try:
        train, test = train_test_split(positions, test_size=test_size, stratify=y, random_state=seed)
        if len(np.unique(y[train])) == len(classes):
            return np.sort(train), np.sort(test), True
    except ValueError:
        pass
    rng = np.random.default_rng(seed)
    train, test = [], []
    by_class = np.split(np.argsort(codes, kind="stable"), np.cumsum(counts)[:-1])
    for members in by_class:
        members = rng.permutation(members)
        n_test = min(len(members) - 1, int(np.floor(test_size * len(members) + rng.random())))
        test.append(members[:n_test])
        train.append(members[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test)), False


def split_level(values, min_per_class: int = 2, test_size: float = 0.2, seed: int = 0) -> LevelSplit:
    """Missing labels out, classes below min_per_class out, then the stratified split."""
    if min_per_class < 1:
        raise ValueError(f"min_per_class must be >= 1, not {min_per_class}")
    labels, present = level_labels(values)
    keep, dropped_samples, dropped_classes = drop_rare(labels, present, min_per_class)
    kept = np.flatnonzero(keep)
    if len(np.unique(labels[kept])) < 2:
        empty = np.array([], dtype=int)
        return LevelSplit(empty, empty, labels, np.unique(labels[kept]), int((~present).sum()),
                          dropped_samples, dropped_classes, stratified=False)
    train, test, stratified = stratified_split(labels[kept], test_size, seed)
    return LevelSplit(kept[train], kept[test], labels, np.unique(labels[kept[train]]),
                      int((~present).sum()), dropped_samples, dropped_classes, stratified)


def standardize(train: np.ndarray, *others: np.ndarray, dtype=np.float32,
                chunk_rows: int = 65536) -> list[np.ndarray]:
    """Centre and scale every array by the mean and (population) std of `train`; constant features
    are centred only. Statistics accumulate in float64 over row chunks (no float64 copy of the
    data); outputs are new arrays in `dtype`, the inputs are left alone."""
    train = np.asarray(train)
    if train.ndim != 2 or len(train) == 0:
        raise ValueError(f"train must be a non-empty (N, D) array, got shape {train.shape}")
    chunks = range(0, len(train), chunk_rows)
    mean = sum(train[i:i + chunk_rows].sum(axis=0, dtype=np.float64) for i in chunks) / len(train)
    squares = sum(np.square(train[i:i + chunk_rows] - mean).sum(axis=0) for i in chunks)
    std = np.sqrt(squares / len(train))
    std[std == 0] = 1.0
    outputs = []
    for array in (train, *others):
        out = np.array(array, dtype=dtype, copy=True)
        out -= mean.astype(dtype)
        out /= std.astype(dtype)
        outputs.append(out)
    return outputs
