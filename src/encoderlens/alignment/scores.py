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
raise on bad input; `score_maps` scores many maps against many thresholds at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .masks import within_tolerance
from .thresholds import DEFAULT_THRESHOLDS, check_thresholds, mass_threshold, mass_threshold_overlaps

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
               tolerance: float = DEFAULT_TOLERANCE) -> Scores:
    """Score M maps (M, H, W) against one mask (H, W) shared by all, or one mask per map (M, H, W).

    Maps are scored as float32. Returns `Scores` with iou (M, K) for the K `thresholds` (percent),
    coverage (M,), pointing_hit (M,) and the flags; the numbers equal the single-map definitions.
    """
    maps = np.asarray(maps, dtype=np.float32)  # flags and scores both see the float32 values
    if maps.ndim != 3:
        raise ValueError(f"maps must have shape (M, H, W), got {maps.shape}")
    n_maps, height, width = maps.shape
    masks = np.asarray(masks, dtype=bool)
    if masks.shape not in ((height, width), (n_maps, height, width)):
        raise ValueError(f"masks must have shape {(height, width)} or {maps.shape}, got {masks.shape}")
    percents = check_thresholds(thresholds)
    flat = maps.reshape(n_maps, -1)
    inside = masks.reshape(-1, height * width)
    # the pixels near each distinct mask, for the pointing game (one distance transform per mask)
    distinct, near_of_map = _distinct(masks.reshape(-1, height, width))
    near = np.stack([within_tolerance(mask, tolerance).ravel() for mask in distinct])
    if masks.ndim == 2:
        near_of_map = np.zeros(n_maps, dtype=int)

    iou_ = np.full((n_maps, len(percents)), np.nan)
    region = np.full((n_maps, len(percents)), np.nan)
    cover = np.full(n_maps, np.nan)
    hit = np.full(n_maps, np.nan)
    scorable = is_scorable(flat)
    has_box = inside.any(axis=1) if masks.ndim == 3 else np.full(n_maps, inside.any())
    todo = np.flatnonzero(scorable & has_box)
    for first in range(0, len(todo), CHUNK):
        rows = todo[first:first + CHUNK]
        values = flat[rows]
        chunk_inside = inside[0] if masks.ndim == 2 else inside[rows]
        size, overlap, cover[rows] = mass_threshold_overlaps(values, chunk_inside, percents)
        mask_size = chunk_inside.sum(axis=-1, keepdims=True)
        iou_[rows] = overlap / (size + mask_size - overlap)
        region[rows] = size / (height * width)
        maxima = values == values.max(axis=1, keepdims=True)
        hit[rows] = np.count_nonzero(maxima & near[near_of_map[rows]], axis=1) / np.count_nonzero(maxima, axis=1)
    return Scores(percents, iou_, region, cover, hit, scorable, has_box)


def _distinct(masks: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """The distinct masks of (M, H, W), and for each of the M the index of its distinct mask."""
    seen: dict[bytes, int] = {}
    index = np.array([seen.setdefault(np.packbits(mask).tobytes(), len(seen)) for mask in masks], dtype=int)
    first = {value: position for position, value in reversed(list(enumerate(index)))}
    return [masks[first[value]] for value in range(len(seen))], index
