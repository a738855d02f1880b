"""The alignment tables as dense (map x image) matrices, one per metric.

A "map" is one (model, variant, method, layer, head, threshold) of the long alignment tables; every
map of a dataset is scored on the same images, so the per-image scores fit a (maps, images) matrix
with NaN where a map has no usable score for an image: no row, `scorable` False, or a NaN score.
`present` keeps which (map, image) rows existed, so dropped scores are counted, not lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

MAP_KEYS = ["model", "variant", "method", "layer", "head", "threshold"]
METRICS = ("iou", "coverage", "pointing_hit")
REQUIRED_COLUMNS = ["image_id", *MAP_KEYS, *METRICS, "scorable"]


@dataclass
class ScoreMatrix:
    keys: pd.DataFrame  # one row per map, MAP_KEYS columns, sorted
    image_ids: np.ndarray  # (n,) sorted
    values: dict[str, np.ndarray]  # metric -> (maps, n) float64, NaN where unusable
    present: np.ndarray  # (maps, n) bool: the table has a row for this map and image

    def usable(self, metric: str) -> np.ndarray:
        return ~np.isnan(self.values[metric])

    def n_dropped(self, metric: str) -> np.ndarray:
        """Per map: rows present whose score was unusable (unscorable or NaN)."""
        return (self.present & ~self.usable(metric)).sum(axis=1)


def check_columns(table: pd.DataFrame, required: Sequence[str], source: str) -> None:
    missing = [column for column in required if column not in table.columns]
    if missing:
        raise ValueError(f"{source}: missing columns {missing} (has {list(table.columns)})")


def _combined_codes(table: pd.DataFrame, keys: list[str]) -> tuple[np.ndarray, pd.DataFrame]:
    """(per-row code of its key combination, the distinct combinations sorted by `keys`).

    Each key column is factorised on its own (sorted) and the codes combined in mixed radix, which
    is several times faster than a groupby over string columns at millions of rows.
    """
    combined = np.zeros(len(table), dtype=np.int64)
    levels = []
    for column in keys:
        codes, uniques = pd.factorize(table[column], sort=True, use_na_sentinel=False)
        combined = combined * len(uniques) + codes
        levels.append(uniques)
    space = int(np.prod([len(uniques) for uniques in levels], dtype=np.float64))
    if space <= 50_000_000:  # a lookup table over all combinations beats sorting millions of codes
        seen = np.zeros(space, dtype=bool)
        seen[combined] = True
        distinct = np.flatnonzero(seen)
        codes = (np.cumsum(seen) - 1)[combined]
    else:
        distinct, codes = np.unique(combined, return_inverse=True)
    columns = {}
    for column, uniques in zip(reversed(keys), reversed(levels)):
        distinct, position = np.divmod(distinct, len(uniques))
        columns[column] = np.asarray(uniques)[position]
    return codes.ravel(), pd.DataFrame({column: columns[column] for column in keys})


def score_matrix(table: pd.DataFrame, metrics: Sequence[str] = METRICS,
                 keys: Sequence[str] = MAP_KEYS, source: str = "alignment table") -> ScoreMatrix:
    """Pivot a long alignment table into per-metric (map, image) matrices."""
    keys = list(keys)
    check_columns(table, ["image_id", *keys, *metrics, "scorable"], source)
    image_codes, image_ids = pd.factorize(table["image_id"].astype(str), sort=True)
    map_codes, map_keys = _combined_codes(table, keys)
    n_maps, n_images = len(map_keys), len(image_ids)
    flat = map_codes.astype(np.int64) * n_images + image_codes
    rows_per_pair = np.bincount(flat, minlength=n_maps * n_images)
    if rows_per_pair.max(initial=0) > 1:
        duplicate = int(np.argmax(rows_per_pair))
        example = dict(map_keys.iloc[duplicate // n_images]) | {"image_id": image_ids[duplicate % n_images]}
        raise ValueError(f"{source}: {int((rows_per_pair > 1).sum())} (map, image) pairs have more than one "
                         f"row, e.g. {example}; each map is scored once per image")
    present = np.zeros(n_maps * n_images, dtype=bool)
    present[flat] = True
    scorable = table["scorable"].to_numpy(dtype=bool)
    values = {}
    for metric in metrics:
        matrix = np.full(n_maps * n_images, np.nan)
        matrix[flat] = np.where(scorable, table[metric].to_numpy(dtype=np.float64), np.nan)
        values[metric] = matrix.reshape(n_maps, n_images)
    return ScoreMatrix(map_keys, np.asarray(image_ids, dtype=object), values,
                       present.reshape(n_maps, n_images))
