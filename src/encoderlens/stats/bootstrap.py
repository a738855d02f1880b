"""Seeded percentile bootstrap confidence intervals of means, for many groups over the same images.

Every group (a row of a (G, n) matrix) holds per-image scores; NaN marks an image the group has no
usable score for (missing, unscorable or NaN). The sampling unit is the image: a resample draws n
images with replacement, the same draw for every group, and a group's resampled statistic is the
mean of its usable scores among the drawn images (NaN scores are dropped, never imputed). This is
`scipy.stats.bootstrap((x,), np.nanmean, method="percentile")` for each group: the resample index
matrix is `rng.integers(0, n, (n_resamples, n))` as scipy draws it, and the endpoints are the
linear-interpolation quantiles (alpha/2, 1 - alpha/2) of the resampled means. With no NaN it is the
plain percentile bootstrap of the mean. (Resamples in which a group drew no usable image at all,
possible only for groups with very few usable images, are left out of its quantiles.)

Speed: the draws become one (n_resamples x n) matrix of counts W, so every group's resampled sums
and usable counts are matrix products, (W @ (x * usable)) / (W @ usable), chunked over groups to
bound memory; identical rows are bootstrapped once.

Reproducibility: the generator is seeded by the seed and the image identifiers (`resample_generator`),
so an interval depends on the group's own scores and the image set, not on which other groups or
models the table holds or in which order. Fewer than two usable images give no interval (NaN).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np

DEFAULT_RESAMPLES = 10_000
DEFAULT_CONFIDENCE = 0.95
# Rows resting on fewer images than this are flagged `small_n`: a bootstrap CI or a p-value from a
# handful of images says little (with n = 2 the percentile CI is spanned by two values).
DEFAULT_MIN_N = 10
# resampled means held at once: chunk rows x n_resamples float64 (64 MB at the default)
MEANS_PER_CHUNK = 8_000_000


@dataclass(frozen=True)
class MeanIntervals:
    """Per group: the mean of its usable scores, the interval, and how many scores went in."""

    mean: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    n: np.ndarray


def resample_generator(seed: int, image_ids: Sequence) -> np.random.Generator:
    """The generator that draws the resamples of one set of usable images (in this order)."""
    digest = hashlib.sha256("\x1f".join(map(str, image_ids)).encode()).digest()
    words = np.frombuffer(digest[:16], dtype=np.uint32).tolist()
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *words]))


def resample_counts(n: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(n_resamples, n) float64: how often each observation appears in each resample.

    Drawn as scipy draws resamples (one index matrix), so with the same generator the resamples are
    the same as scipy.stats.bootstrap's.
    """
    picks = rng.integers(0, n, (n_resamples, n))
    flat = picks + (np.arange(n_resamples) * n)[:, None]
    return np.bincount(flat.ravel(), minlength=n_resamples * n).reshape(n_resamples, n).astype(np.float64)


def _unique_rows(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(indices of distinct rows, inverse) treating NaN as equal to NaN."""
    canonical = np.ascontiguousarray(np.where(np.isnan(values), np.nan, values + 0.0))  # -0.0 -> 0.0
    rows = canonical.view(np.dtype((np.void, canonical.dtype.itemsize * canonical.shape[1]))).ravel()
    _, first, inverse = np.unique(rows, return_index=True, return_inverse=True)
    return first, inverse.ravel()


def _interval_quantiles(confidence: float) -> list[float]:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    alpha = (1 - confidence) / 2
    return [alpha, 1 - alpha]


def _row_quantiles(means: np.ndarray, quantiles: Sequence[float]) -> np.ndarray:
    """(len(quantiles), rows): numpy's default ("linear") quantiles along axis 1, by one partition
    at the few order statistics needed rather than np.quantile's general path."""
    if np.isnan(means).any():
        return np.nanquantile(means, quantiles, axis=1)
    last = means.shape[1] - 1
    positions = np.asarray(quantiles) * last
    below = np.floor(positions).astype(int)
    above = np.minimum(below + 1, last)
    ordered = np.partition(means, np.unique(np.concatenate([below, above])), axis=1)
    fraction = (positions - below)[:, None]
    low, high = ordered[:, below].T, ordered[:, above].T
    return np.where(fraction < 0.5, low + (high - low) * fraction, high - (high - low) * (1 - fraction))


def bootstrap_mean_ci(values: np.ndarray, image_ids: Sequence | None = None,
                      n_resamples: int = DEFAULT_RESAMPLES, confidence: float = DEFAULT_CONFIDENCE,
                      seed: int = 0) -> MeanIntervals:
    """Percentile bootstrap intervals of each row's mean over its non-NaN entries.

    `values` (G, n): rows are groups, columns images (`image_ids` names them; they seed the
    resamples). Returns per-row mean, ci_low, ci_high and n (usable entries).
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"values must be (groups, images), got shape {values.shape}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    quantiles = _interval_quantiles(confidence)
    groups, n_images = values.shape
    ids = list(range(n_images)) if image_ids is None else list(image_ids)
    if len(ids) != n_images:
        raise ValueError(f"{len(ids)} image ids for {n_images} columns")
    usable = ~np.isnan(values)
    n = usable.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, np.where(usable, values, 0.0).sum(axis=1) / n, np.nan)
    first, inverse = _unique_rows(values)
    representative = first[inverse]
    distinct = first[n[first] >= 2]
    if len(distinct) == 0:
        return MeanIntervals(mean, np.full(groups, np.nan), np.full(groups, np.nan), n)
    counts = resample_counts(n_images, n_resamples, resample_generator(seed, ids)).T  # (n, B)
    chunk = max(1, MEANS_PER_CHUNK // n_resamples)
    distinct_low = np.full(groups, np.nan)
    distinct_high = np.full(groups, np.nan)
    for start in range(0, len(distinct), chunk):
        block = distinct[start:start + chunk]
        block_usable = usable[block]
        means = np.where(block_usable, values[block], 0.0) @ counts
        partial = np.flatnonzero(~block_usable.all(axis=1))
        means[~np.isin(np.arange(len(block)), partial)] /= n_images
        if len(partial):
            with np.errstate(invalid="ignore", divide="ignore"):
                means[partial] /= block_usable[partial].astype(np.float64) @ counts
        distinct_low[block], distinct_high[block] = _row_quantiles(means, quantiles)
    low, high = distinct_low[representative], distinct_high[representative]
    return MeanIntervals(mean, low, high, n)
