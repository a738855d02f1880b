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

MASS_SLACK = 1e-9 absorbs float64 summation error: mass within 1e-9 of the total short of p% counts as
reaching p%, so a map of four 0.25s reaches 50% with two pixels whatever the summation order.

`mass_threshold` is the definition written out for one map; `mass_threshold_overlaps` computes the
same numbers for many maps and thresholds at once without a full sort (see its docstring).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

DEFAULT_THRESHOLDS = (10, 15, 20, 25, 30, 40, 50)
MASS_SLACK = 1e-9

# the fast path bins pixels by the top 16 bits of their float32 pattern: 7 mantissa bits, so 128 bins
# per octave; 1024 bins reach 8 octaves below each map's maximum, the rest share the last bin
_KEY_SHIFT = 16
_BINS = 1024


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
    Returns size (M, K) = n_p, overlap (M, K) = sum of region weights inside the mask, and
    inside_share (M,) = the map's mass inside the mask / its total mass.

    How: the bit pattern of a non-negative float32 orders like its value, so its top 16 bits bin the
    pixels on a log scale (128 bins per octave below each map's maximum). Two bincounts per map give
    each bin's pixel count, mass and mask count; cumulative sums over bins locate the bin holding the
    cut for every threshold; only the pixels of those few bins are sorted. One O(N) pass per map
    serves all K thresholds.
    """
    maps = np.ascontiguousarray(maps, dtype=np.float32)
    fractions = check_thresholds(thresholds) / 100 - MASS_SLACK
    n_maps, n_pixels = maps.shape
    n_thresholds = len(fractions)
    inside = np.asarray(inside, dtype=bool)
    if inside.shape not in ((n_pixels,), (n_maps, n_pixels)):
        raise ValueError(f"inside must have shape ({n_pixels},) or {maps.shape}, got {inside.shape}")
    inside_offset = inside.astype(np.uint32) * np.uint32(_BINS)

    # 1. bin: rank 0 is the bin of the map's maximum, everything 8+ octaves below shares the last bin
    #    (-0.0's pattern has the sign bit set: the unsigned difference wraps and is clipped to the last
    #    bin, where 0.0 goes too); the mask bit adds _BINS
    top = (maps.max(axis=1).view(np.uint32) >> np.uint32(_KEY_SHIFT))[:, None]
    keys = maps.view(np.uint32) >> np.uint32(_KEY_SHIFT)
    np.subtract(top, keys, out=keys)
    np.minimum(keys, np.uint32(_BINS - 1), out=keys)
    rank = np.add(keys, inside_offset, dtype=np.intp)
    counts = np.empty((n_maps, 2, _BINS))
    mass = np.empty((n_maps, 2, _BINS))
    for row in range(n_maps):
        counts[row] = np.bincount(rank[row], minlength=2 * _BINS).reshape(2, _BINS)
        mass[row] = np.bincount(rank[row], weights=maps[row], minlength=2 * _BINS).reshape(2, _BINS)

    # 2. the bin of each cut, and what the bins above it hold
    total = mass.sum(axis=(1, 2))
    cum_share = np.cumsum(mass.sum(axis=1), axis=1) / total[:, None]
    cut_bin = (cum_share[:, None, :] < fractions[None, :, None]).sum(axis=2)
    np.minimum(cut_bin, _BINS - 1, out=cut_bin)  # cum_share[-1] is 1 up to rounding
    share_before = _before(cum_share, cut_bin)
    size_before = _before(np.cumsum(counts.sum(axis=1), axis=1), cut_bin)
    inside_before = _before(np.cumsum(counts[:, 1], axis=1), cut_bin)

    # 3. the pixels of the cut bins, sorted by value within each (map, bin)
    is_cut = np.zeros((n_maps, 2 * _BINS), dtype=bool)
    map_of_pair = np.repeat(np.arange(n_maps), n_thresholds)
    is_cut[map_of_pair, cut_bin.ravel()] = True
    is_cut[map_of_pair, cut_bin.ravel() + _BINS] = True
    picked = [np.flatnonzero(np.take(is_cut[row], rank[row], mode="clip")) for row in range(n_maps)]
    pick_map = np.repeat(np.arange(n_maps), [len(p) for p in picked])
    pick_pixel = np.concatenate(picked)
    # by map, then value descending: one sort of (map, inverted float32 pattern) as uint64
    picked_value = maps[pick_map, pick_pixel] + np.float32(0.0)  # -0.0 + 0.0 is +0.0
    inverted = np.uint32(0xFFFFFFFF) - picked_value.view(np.uint32)
    order = np.argsort((pick_map.astype(np.uint64) << np.uint64(32)) | inverted)
    pick_map, pick_pixel = pick_map[order], pick_pixel[order]
    value = maps[pick_map, pick_pixel]
    pick_rank = rank[pick_map, pick_pixel]
    pick_bin, pick_inside = pick_rank % _BINS, pick_rank >= _BINS
    cum_pick_share = np.cumsum(value / total[pick_map])

    # 4. within each cut bin, the crossing pixel and the ties at its value
    starts = np.flatnonzero(np.r_[True, (pick_map[1:] != pick_map[:-1]) | (pick_bin[1:] != pick_bin[:-1])])
    group_key = pick_map[starts] * _BINS + pick_bin[starts]
    group = np.searchsorted(group_key, map_of_pair * _BINS + cut_bin.ravel())
    first = starts[group]
    length = np.r_[starts[1:], len(pick_map)][group] - first
    pair = np.repeat(np.arange(len(group)), length)
    position = np.repeat(first, length) + np.arange(length.sum()) - np.repeat(np.cumsum(length) - length, length)
    share_at = cum_pick_share[position] - np.r_[0.0, cum_pick_share][np.repeat(first, length)]
    short = share_at < (fractions[None, :] - share_before).ravel()[pair]
    taken = np.minimum(np.bincount(pair, short, minlength=len(group)).astype(np.int64) + 1, length)
    cut_value = value[first + taken - 1]
    above = value[position] > cut_value[pair]
    tied = value[position] == cut_value[pair]
    count = lambda selected: np.bincount(pair, selected, minlength=len(group))  # noqa: E731
    n_above, n_tied = count(above), count(tied)
    in_above, in_tied = count(above & pick_inside[position]), count(tied & pick_inside[position])

    size = size_before.ravel() + taken
    overlap = inside_before.ravel() + in_above + (taken - n_above) * in_tied / n_tied
    inside_share = mass[:, 1].sum(axis=1) / total
    return (size.reshape(n_maps, n_thresholds).astype(np.float64),
            overlap.reshape(n_maps, n_thresholds), inside_share)


def _before(cumulative: np.ndarray, index: np.ndarray) -> np.ndarray:
    """cumulative[m, index[m, k] - 1], 0 where index is 0: what the bins before each cut hold."""
    padded = np.concatenate([np.zeros((len(cumulative), 1)), cumulative], axis=1)
    return np.take_along_axis(padded, index, axis=1)
