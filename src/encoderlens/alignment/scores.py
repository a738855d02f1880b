"""Alignment scores of attention maps with expert boxes: mass-threshold IoU, coverage, pointing game.

Conventions (maps and masks at the analysis resolution, see `resize.upsample`):
- IoU at p%: |R_p ∩ B| / |R_p ∪ B|, R_p the p%-mass region of `thresholds.mass_threshold` (pixels
  tied at the cut value carry fractional weight), B the box mask.
- coverage: the map's mass inside B / its total mass.
- pointing game: is the maximum within `tolerance` pixels (Euclidean distance between pixel centres,
  inclusive; 0 inside the box) of B? If several pixels share the maximum, the score is the fraction of
  them that are: the expected hit of a random tie-break, so 0 or 1 for a unique maximum and, for a
  constant map, the share of the image near the boxes (what a random point scores).

Unscorable input is flagged, never scored as zero: a map with a NaN or infinite value, a negative
value, or zero total mass has `scorable` False; an empty mask (an image without boxes, or boxes too
small to hold a pixel centre) has `has_box` False. Every score of a flagged map is NaN.

The single-map functions (`iou`, `coverage`, `pointing_game`) are the definitions written out and
raise on bad input. `score_maps` (maps at the analysis resolution) and `score_grid_maps` (maps on
their patch grid, upsampled on the fly) score many maps against many thresholds at once with the
compiled kernel (`kernel.py`); `score_maps_reference` computes the same in NumPy, one sort per map.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .masks import within_tolerance
from .resize import bilinear_taps
from .thresholds import (DEFAULT_THRESHOLDS, MASS_SLACK, check_thresholds, mass_threshold,
                         mass_threshold_counts, region_overlap)

DEFAULT_TOLERANCE = 15.0
CHUNK = 64  # maps copied and scored together: bounds the temporaries


# ---- definitions, one map -------------------------------------------------------------------------
def iou(region: np.ndarray, mask: np.ndarray) -> float:
    """IoU of region weights in [0, 1] (a bool region, or `mass_threshold`'s output) with a mask."""
    region, mask = np.asarray(region, dtype=np.float64), _nonempty(mask)
    overlap = region[mask].sum()
    return float(overlap / (region.sum() + mask.sum() - overlap))


def mass_iou(saliency: np.ndarray, mask: np.ndarray, percent: float) -> float:
    """IoU of the `percent`% mass region of `saliency` with `mask`."""
    return iou(mass_threshold(saliency, percent), mask)


def coverage(saliency: np.ndarray, mask: np.ndarray) -> float:
    """Share of the map's mass inside the mask."""
    values, mask = _checked(saliency), _nonempty(mask)
    return float(values[mask].sum() / values.sum())


def pointing_game(saliency: np.ndarray, mask: np.ndarray, tolerance: float = DEFAULT_TOLERANCE) -> float:
    """Fraction of the map's maximal pixels within `tolerance` pixels of the mask (see module doc)."""
    values, mask = _checked(saliency), _nonempty(mask)
    maxima = values == values.max()
    return float(np.count_nonzero(maxima & within_tolerance(mask, tolerance)) / np.count_nonzero(maxima))


def is_scorable(maps: np.ndarray) -> np.ndarray:
    """(M, H, W) -> (M,) bool: every value finite and non-negative, total mass positive."""
    flat = np.asarray(maps).reshape(len(maps), -1)
    if flat.shape[1] == 0:
        return np.zeros(len(flat), dtype=bool)
    # max is NaN if any value is, so a finite positive max and a non-negative min cover every case
    return np.isfinite(flat.max(axis=1)) & (flat.max(axis=1) > 0) & (flat.min(axis=1) >= 0)


def _checked(saliency) -> np.ndarray:
    values = np.asarray(saliency, dtype=np.float32).astype(np.float64)
    if not is_scorable(values[None])[0]:
        raise ValueError("map is not scorable: it needs finite, non-negative values with positive sum")
    return values


def _nonempty(mask) -> np.ndarray:
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        raise ValueError("mask is empty: no box covers a pixel centre")
    return mask


# ---- many maps at once ------------------------------------------------------------------------------
@dataclass
class Scores:
    """Scores of M maps. Rows that are not `scorable` or have no box (`has_box` False) are NaN."""

    thresholds: np.ndarray       # (K,) percentages
    iou: np.ndarray              # (M, K)
    region_fraction: np.ndarray  # (M, K) n_p / number of pixels: how spread the p% region is
    coverage: np.ndarray         # (M,)
    pointing_hit: np.ndarray     # (M,) in [0, 1]; 0 or 1 unless the maximum is tied
    scorable: np.ndarray         # (M,) bool
    has_box: np.ndarray          # (M,) bool

    def __len__(self) -> int:
        return len(self.coverage)

    def columns(self) -> dict[str, np.ndarray]:
        """Flat columns for a table: iou_p10, ..., region_p10, ..., coverage, pointing_hit, flags."""
        names = [f"{p:g}" for p in self.thresholds]
        columns = {f"iou_p{name}": self.iou[:, k] for k, name in enumerate(names)}
        columns |= {f"region_p{name}": self.region_fraction[:, k] for k, name in enumerate(names)}
        return columns | {"coverage": self.coverage, "pointing_hit": self.pointing_hit,
                          "scorable": self.scorable, "has_box": self.has_box}

    def average(self) -> "Scores":
        """One row: the mean over the M maps (e.g. R random draws); NaN if any row is flagged."""
        mean = lambda values: values.mean(axis=0, keepdims=True)  # noqa: E731
        return Scores(self.thresholds, mean(self.iou), mean(self.region_fraction), mean(self.coverage),
                      mean(self.pointing_hit), self.scorable.all(keepdims=True),
                      self.has_box.all(keepdims=True))


def score_maps(maps: np.ndarray, masks: np.ndarray, thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
               tolerance: float = DEFAULT_TOLERANCE, threads: int | None = None) -> Scores:
    """Score M maps (M, H, W) against one mask (H, W) shared by all, or one mask per map (M, H, W).

    Maps are scored as float32. Returns `Scores` with iou (M, K) for the K `thresholds` (percent),
    coverage (M,), pointing_hit (M,) and the flags; the numbers equal the single-map definitions.
    Runs the compiled kernel on `threads` threads (default: every core this process may use).
    """
    maps, masks = _checked_shapes(maps, masks)
    map_of_pair = np.arange(len(maps))
    distinct, mask_of_pair = _distinct(masks.reshape(-1, *masks.shape[-2:]))
    if masks.ndim == 2:
        mask_of_pair = np.zeros(len(maps), dtype=np.int64)
    return _score(maps, map_of_pair, np.stack(distinct), mask_of_pair, thresholds, tolerance, threads)


def score_grid_maps(grids: np.ndarray, masks: np.ndarray, map_of_pair: np.ndarray | None = None,
                    mask_of_pair: np.ndarray | None = None,
                    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
                    tolerance: float = DEFAULT_TOLERANCE, threads: int | None = None) -> Scores:
    """Score maps on their patch grid (M, gh, gw) against masks at the analysis resolution (D, H, W).

    Each map is upsampled to (H, W) inside the kernel (bitwise `resize.upsample`) and never stored at
    that size, so this equals `score_maps(upsample(grids, (H, W)), ...)` at a fraction of the memory.
    Row p of the result scores map `map_of_pair[p]` against mask `mask_of_pair[p]` (default: every map
    against mask 0 if D is 1, map i against mask i if D is M), so one call can score every image's maps
    against its own boxes, and against each building part's boxes.
    """
    grids = np.ascontiguousarray(grids, dtype=np.float32)
    masks = np.asarray(masks, dtype=bool)
    if grids.ndim != 3 or masks.ndim != 3:
        raise ValueError(f"grids must be (M, gh, gw) and masks (D, H, W), got {grids.shape} and {masks.shape}")
    if map_of_pair is None and mask_of_pair is None:
        if len(masks) not in (1, len(grids)):
            raise ValueError(f"{len(masks)} masks for {len(grids)} maps: pass map_of_pair and mask_of_pair")
        map_of_pair = np.arange(len(grids))
        mask_of_pair = np.zeros(len(grids), dtype=np.int64) if len(masks) == 1 else np.arange(len(grids))
    map_of_pair = _indices(map_of_pair, len(grids), "map_of_pair")
    mask_of_pair = _indices(mask_of_pair, len(masks), "mask_of_pair")
    if len(map_of_pair) != len(mask_of_pair):
        raise ValueError(f"map_of_pair has {len(map_of_pair)} entries, mask_of_pair {len(mask_of_pair)}")
    return _score(grids, map_of_pair, masks, mask_of_pair, thresholds, tolerance, threads)


def _indices(values, count: int, name: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.int64).ravel()
    if len(values) and (values.min() < 0 or values.max() >= count):
        raise ValueError(f"{name} must index 0..{count - 1}")
    return values


def _score(maps: np.ndarray, map_of_pair: np.ndarray, masks: np.ndarray, mask_of_pair: np.ndarray,
           thresholds: Sequence[float], tolerance: float, threads: int | None) -> Scores:
    """Scores of the pairs (maps[map_of_pair[p]], masks[mask_of_pair[p]]); maps at the masks'
    resolution or on a grid to upsample to it."""
    from .kernel import score_pairs  # compiled on first use, not on importing the package

    percents = check_thresholds(thresholds)
    height, width = masks.shape[-2:]
    taps = None
    if maps.shape[-2:] != (height, width):
        taps = bilinear_taps(maps.shape[2], width) + bilinear_taps(maps.shape[1], height)
    inside = masks.reshape(len(masks), -1)
    # the pixels near each mask, for the pointing game (one distance transform per mask)
    near = np.stack([within_tolerance(mask, tolerance).ravel() for mask in masks])
    counts = score_pairs(maps, map_of_pair, inside, near, mask_of_pair, percents / 100 - MASS_SLACK,
                         taps, threads)
    return _scores_from_counts(counts, percents, inside.sum(axis=1)[mask_of_pair], height * width)


def _scores_from_counts(counts: dict, percents: np.ndarray, mask_size: np.ndarray, n_pixels: int) -> Scores:
    """Scores from the integer counts of `thresholds.mass_threshold_counts` / `kernel.score_pairs`."""
    scorable, has_box = counts["scorable"], mask_size > 0
    valid = (scorable & has_box)[:, None]
    size = counts["size"].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        overlap = region_overlap(counts)
        iou_ = np.where(valid, overlap / (size + mask_size[:, None] - overlap), np.nan)
        cover = np.where(valid[:, 0], counts["total_inside"] / counts["total"], np.nan)
        hit = np.where(valid[:, 0], counts["n_max_near"] / counts["n_max"], np.nan)
    return Scores(percents, iou_, np.where(valid, size / n_pixels, np.nan), cover, hit, scorable, has_box)


def score_maps_reference(maps: np.ndarray, masks: np.ndarray,
                         thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
                         tolerance: float = DEFAULT_TOLERANCE) -> Scores:
    """`score_maps` in NumPy, one sort per map (`thresholds.mass_threshold_counts`): the reference
    the compiled kernel is tested against, and the baseline of the throughput benchmark."""
    maps, masks = _checked_shapes(maps, masks)
    percents = check_thresholds(thresholds)
    n_maps, height, width = maps.shape
    flat = maps.reshape(n_maps, -1)
    inside = masks.reshape(-1, height * width)
    distinct, near_of_map = _distinct(masks.reshape(-1, height, width))
    near = np.stack([within_tolerance(mask, tolerance).ravel() for mask in distinct])
    if masks.ndim == 2:
        near_of_map = np.zeros(n_maps, dtype=int)
    scorable = is_scorable(flat)
    names = ("size", "above", "tied", "boxed_above", "boxed_tied")
    counts = {name: np.zeros((n_maps, len(percents)), dtype=np.int64) for name in names}
    counts |= {name: np.zeros(n_maps) for name in ("total", "total_inside")}
    counts |= {name: np.zeros(n_maps, dtype=np.int64) for name in ("n_max", "n_max_near")}
    counts["scorable"] = scorable
    mask_size = inside.sum(axis=1) if masks.ndim == 3 else np.full(n_maps, inside.sum())
    todo = np.flatnonzero(scorable & (mask_size > 0))
    for first in range(0, len(todo), CHUNK):
        rows = todo[first:first + CHUNK]
        values = flat[rows]
        chunk_counts = mass_threshold_counts(values, inside[0] if masks.ndim == 2 else inside[rows],
                                             percents)
        for name, value in chunk_counts.items():
            counts[name][rows] = value
        maxima = values == values.max(axis=1, keepdims=True)
        counts["n_max"][rows] = np.count_nonzero(maxima, axis=1)
        counts["n_max_near"][rows] = np.count_nonzero(maxima & near[near_of_map[rows]], axis=1)
    return _scores_from_counts(counts, percents, mask_size, height * width)


def _checked_shapes(maps, masks) -> tuple[np.ndarray, np.ndarray]:
    maps = np.asarray(maps, dtype=np.float32)  # flags and scores both see the float32 values
    if maps.ndim != 3:
        raise ValueError(f"maps must have shape (M, H, W), got {maps.shape}")
    masks = np.asarray(masks, dtype=bool)
    if masks.shape not in (maps.shape[1:], maps.shape):
        raise ValueError(f"masks must have shape {maps.shape[1:]} or {maps.shape}, got {masks.shape}")
    return maps, masks


def _distinct(masks: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """The distinct masks of (M, H, W), and for each of the M the index of its distinct mask."""
    seen: dict[bytes, int] = {}
    index = np.array([seen.setdefault(np.packbits(mask).tobytes(), len(seen)) for mask in masks], dtype=int)
    first = {value: position for position, value in reversed(list(enumerate(index)))}
    return [masks[first[value]] for value in range(len(seen))], index
