"""Attention-mass thresholds: the smallest set of highest-valued pixels holding p% of a map's mass.

Definition (one map v >= 0 with total mass T > 0, p in (0, 100]):
  sort the values in descending order, s_1 >= s_2 >= ..., with cumulative sums C_n = s_1 + ... + s_n;
  n_p is the smallest n with C_n >= (p / 100 - MASS_SLACK) * T, so the pixel that crosses p% is
  included; the cut value is t = s_{n_p}.
  The region holds every pixel with v > t, and shares the remaining n_p - #{v > t} places out evenly
  among the pixels with v == t: each tied pixel carries the weight (n_p - #{v > t}) / #{v == t}.
Without a tie at the cut (the usual case for real-valued maps) the weights are 0 or 1: a plain pixel
set of n_p pixels. With ties the region's overlap with a mask is the expected overlap under a random
tie-break, without drawing one: deterministic and independent of pixel order. (Breaking ties by pixel
index instead would put a constant map's region in the top rows of the image and reward any box
there.) n_p itself never depends on how ties are broken.

MASS_SLACK = 1e-9 absorbs float64 rounding: mass within 1e-9 of the total short of p% counts as
reaching p%. (7% of a total of 100 is 0.07 * 100 = 7.000000000000001 in float64; a pixel holding
exactly 7 reaches it.)

`mass_threshold` is the definition written out for one map and threshold; `mass_threshold_counts`
computes the same numbers for many maps and all thresholds with one sort per map (the NumPy
reference), and the compiled `kernel.score_pairs` computes them without sorting whole maps.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

DEFAULT_THRESHOLDS = (10, 15, 20, 25, 30, 40, 50)
MASS_SLACK = 1e-9


def check_thresholds(thresholds: Sequence[float]) -> np.ndarray:
    """Percentages as a (K,) float64 array, each in (0, 100]."""
    percents = np.atleast_1d(np.asarray(thresholds, dtype=np.float64))
    if percents.ndim != 1 or not len(percents):
        raise ValueError("thresholds must be a non-empty list of percentages")
    if not (np.isfinite(percents).all() and (percents > 0).all() and (percents <= 100).all()):
        raise ValueError(f"thresholds are percentages in (0, 100], got {percents.tolist()}")
    return percents


def mass_threshold(saliency: np.ndarray, percent: float) -> np.ndarray:
    """Region weights (same shape as `saliency`) holding `percent`% of its mass; see the module doc.

    Weights are 1 above the cut value, shared among pixels tied at it, 0 below; they sum to n_p.
    Raises ValueError for a map that cannot be scored (non-finite, negative values, zero mass).
    """
    percent = float(check_thresholds([percent])[0])
    values = np.asarray(saliency, dtype=np.float32).astype(np.float64)
    if not (np.isfinite(values).all() and (values >= 0).all() and values.sum() > 0):
        raise ValueError("map is not scorable: it needs finite, non-negative values with positive sum")
    flat = values.ravel()
    ordered = np.sort(flat)[::-1]
    cumulative = np.cumsum(ordered)
    target = (percent / 100 - MASS_SLACK) * cumulative[-1]
    n = min(int(np.searchsorted(cumulative, target, side="left")) + 1, flat.size)
    cut = ordered[n - 1]
    above, tied = flat > cut, flat == cut
    weights = above.astype(np.float64)
    weights[tied] = (n - above.sum()) / tied.sum()
    return weights.reshape(values.shape)


def mass_threshold_overlaps(maps: np.ndarray, inside: np.ndarray,
                            thresholds: Sequence[float] = DEFAULT_THRESHOLDS):
    """Region sizes and mask overlaps of every (map, threshold) pair, exactly as `mass_threshold`.

    maps: (M, N) float32, every row scorable (finite, non-negative, positive sum).
    inside: (N,) bool mask shared by all maps, or (M, N) one per map.
    Returns size (M, K) = n_p, overlap (M, K) = the region's weight inside the mask, and
    inside_share (M,) = the map's mass inside the mask / its total mass.
    """
    counts = mass_threshold_counts(maps, inside, thresholds)
    return counts["size"].astype(np.float64), region_overlap(counts), counts["total_inside"] / counts["total"]


def region_overlap(counts: dict) -> np.ndarray:
    """The region's weight inside the mask: every pixel above the cut that is inside, plus the
    places left at the cut shared evenly among the tied pixels (the inside ones take their share)."""
    return counts["boxed_above"] + (counts["size"] - counts["above"]) * counts["boxed_tied"] / counts["tied"]


def mass_threshold_counts(maps: np.ndarray, inside: np.ndarray,
                          thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> dict[str, np.ndarray]:
    """The integer counts behind every (map, threshold) region, by one sort per map (NumPy reference).

    Same inputs as `mass_threshold_overlaps`. Returns int64 (M, K) arrays `size` (n_p), `above`
    (pixels greater than the cut value), `tied` (pixels equal to it), `boxed_above` and `boxed_tied`
    (those of them inside the mask), and float64 (M,) `total` and `total_inside` (the map's mass, and
    its mass inside the mask). The compiled kernel (`kernel.score_pairs`) returns the same counts.

    One sort per map serves all K thresholds: cumulative sums of the sorted values give every n_p and
    cut value at once, and the mask's pixels are counted against the K cut values.
    """
    maps = np.ascontiguousarray(maps, dtype=np.float32)
    fractions = check_thresholds(thresholds) / 100 - MASS_SLACK
    n_maps, n_pixels = maps.shape
    inside = np.asarray(inside, dtype=bool)
    if inside.shape not in ((n_pixels,), (n_maps, n_pixels)):
        raise ValueError(f"inside must have shape ({n_pixels},) or {maps.shape}, got {inside.shape}")
    shared = np.flatnonzero(inside) if inside.ndim == 1 else None
    names = ("size", "above", "tied", "boxed_above", "boxed_tied")
    counts = {name: np.empty((n_maps, len(fractions)), dtype=np.int64) for name in names}
    counts |= {"total": np.empty(n_maps), "total_inside": np.empty(n_maps)}
    for row, values in enumerate(maps):
        boxed = np.take(values, shared if shared is not None else np.flatnonzero(inside[row]))
        for name, value in zip(names + ("total", "total_inside"), _counts(values, boxed, fractions)):
            counts[name][row] = value
    return counts


def _counts(values: np.ndarray, boxed: np.ndarray, fractions: np.ndarray):
    """n_p, above, tied, boxed_above, boxed_tied, total and mass inside the mask of one map;
    `boxed` are its values inside the mask."""
    total = values.sum(dtype=np.float64)
    # only the top of the map needs sorting: pixels below (1 - f) * mean hold less than (1 - f) of the
    # mass together, so the region holding f never reaches them (checked; rounding falls back to all)
    floor = np.float32((1 - fractions.max()) * total / len(values))
    top = np.compress(values >= floor, values)
    if top.sum(dtype=np.float64) < fractions.max() * total:
        top = values
    descending = np.sort(top)[::-1]
    n = _top_counts(descending, fractions * total)
    cut = descending[n - 1]
    above = np.searchsorted(-descending, -cut, side="left")  # values strictly greater than the cut
    tied = np.searchsorted(-descending, -cut, side="right") - above
    boxed_above = np.count_nonzero(boxed[None, :] > cut[:, None], axis=1)
    boxed_tied = np.count_nonzero(boxed[None, :] == cut[:, None], axis=1)
    return n, above, tied, boxed_above, boxed_tied, total, boxed.sum(dtype=np.float64)


def _top_counts(descending: np.ndarray, targets: np.ndarray, block: int = 512) -> np.ndarray:
    """For each target mass, the smallest n whose top-n sum reaches it (at most len(descending)).

    A full float64 cumulative sum costs more than the sort here; block sums locate the block where
    each target is crossed, and only those blocks are accumulated value by value.
    """
    values = descending.astype(np.float64)
    starts = np.arange(0, len(values), block)
    before_block = np.concatenate([[0.0], np.cumsum(np.add.reduceat(values, starts))])
    counts = np.empty(len(targets), dtype=np.int64)
    for k, target in enumerate(targets):
        b = min(max(np.searchsorted(before_block, target, side="left") - 1, 0), len(starts) - 1)
        within = before_block[b] + np.cumsum(values[starts[b]:starts[b] + block])
        counts[k] = min(starts[b] + np.searchsorted(within, target, side="left") + 1, len(values))
    return counts
