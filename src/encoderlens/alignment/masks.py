"""Expert boxes rasterised as pixel masks at the analysis resolution.

Boxes are (left, top, width, height) in [0, 1] of the full image (the annotations contract). Images
reach the models squashed to a square without cropping, so normalised coordinates map onto any
analysis grid by scaling alone.

Pixel rule: pixel (row r, column c) of an (H, W) grid has its centre at ((c + 0.5) / W, (r + 0.5) / H)
in normalised coordinates; it belongs to a box when its centre lies in the half-open box
[left, left + width) x [top, top + height). So a box reaching past the border covers the same pixels
as the box clamped to [0, 1], a box covering the whole image covers every pixel, two boxes that tile
the image share no pixel, and a box narrower than a pixel that holds no centre rasterises to nothing.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from scipy.ndimage import distance_transform_edt

from .resize import as_size

BOX_COLUMNS = ("left", "top", "width", "height")


def box_mask(boxes: np.ndarray | Sequence[Sequence[float]], size: int | tuple[int, int]) -> np.ndarray:
    """Union of `boxes` (n, 4) as an (H, W) bool mask; no boxes gives an all-False mask."""
    height, width = as_size(size)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if not np.isfinite(boxes).all():
        raise ValueError("box coordinates must be finite")
    if (boxes[:, 2:] < 0).any():
        raise ValueError("box width and height must be non-negative")
    # no clamping needed: every pixel centre lies inside the image, so the part of a box beyond the
    # border holds none (and the annotations contract clamps boxes already)
    left, top = boxes[:, 0], boxes[:, 1]
    right, bottom = left + boxes[:, 2], top + boxes[:, 3]
    # compare in pixel units: pixel c's centre is at c + 0.5 of W pixels
    cols = np.arange(width) + 0.5
    rows = np.arange(height) + 0.5
    in_cols = (cols >= left[:, None] * width) & (cols < right[:, None] * width)      # (n, W)
    in_rows = (rows >= top[:, None] * height) & (rows < bottom[:, None] * height)    # (n, H)
    return (in_rows[:, :, None] & in_cols[:, None, :]).any(axis=0)


def feature_masks(boxes: np.ndarray, features: Sequence[str],
                  size: int | tuple[int, int]) -> dict[str, np.ndarray]:
    """One mask per feature type (building part): the union of that feature's boxes."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    features = np.asarray(features, dtype=object)
    if len(features) != len(boxes):
        raise ValueError(f"{len(boxes)} boxes but {len(features)} feature names")
    return {name: box_mask(boxes[features == name], size) for name in sorted(set(features))}


def box_masks(annotations: pd.DataFrame, size: int | tuple[int, int],
              by: Sequence[str] = ("image_id",)) -> dict[tuple, np.ndarray]:
    """Masks from an annotations table, one per group of `by` columns, keyed by the group's values.

    `by=("image_id",)` gives each image's union of boxes; `by=("image_id", "feature")` one mask per
    image and feature type. Images without boxes have no rows, hence no key: the caller decides
    (an image absent from the dict has an empty mask, which the scores flag).
    """
    by = list(by)
    missing = set(by) | set(BOX_COLUMNS)
    missing -= set(annotations.columns)
    if missing:
        raise ValueError(f"annotations lack column(s) {sorted(missing)}")
    return {(key if isinstance(key, tuple) else (key,)): box_mask(group[list(BOX_COLUMNS)].to_numpy(), size)
            for key, group in annotations.groupby(by, sort=True)}


def within_tolerance(mask: np.ndarray, tolerance: float) -> np.ndarray:
    """Pixels whose centre lies within `tolerance` pixels (Euclidean, inclusive) of a mask pixel's centre.

    The mask itself is included (distance 0). An empty mask has no pixel near it.
    """
    mask = np.asarray(mask, dtype=bool)
    if tolerance < 0:
        raise ValueError(f"tolerance must be non-negative, got {tolerance}")
    if not mask.any():
        return np.zeros_like(mask)
    # only pixels within `tolerance` of the mask's bounding box can be near it: transform that window
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    reach = int(np.floor(tolerance)) + 1
    top, bottom = max(rows[0] - reach, 0), min(rows[-1] + reach + 1, mask.shape[0])
    left, right = max(cols[0] - reach, 0), min(cols[-1] + reach + 1, mask.shape[1])
    near = np.zeros_like(mask)
    near[top:bottom, left:right] = distance_transform_edt(~mask[top:bottom, left:right]) <= tolerance
    return near
