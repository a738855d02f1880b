"""Which attention heads look at which building parts: per-head IoU per feature type.

Input: the per-feature alignment tables (`alignment_features.parquet`: each image scored against the
boxes of one feature type at a time). Only single heads enter (head >= 0, not the head mean). A
"head" is a (layer, head) pair; heads are ranked across all layers of one (model, variant, method,
threshold).

- `head_feature_iou`: per head and feature type, mean IoU over the images showing that feature
  (usable scores only; `n`, `n_dropped`), `relative_iou` (the head's IoU over the mean IoU of all the
  model's heads on that feature: > 1 means better than the model's average head), `rank` (1 = the
  head with the highest mean IoU on that feature).
- `head_specialisation`: per head, over the feature types with at least `min_images` usable images:
  p_f = relative_iou_f / sum_f relative_iou_f, and
      specialisation = 1 - H(p) / log(F),  H(p) = -sum_f p_f log p_f,
  0 when the head beats the average head by the same factor on every feature type (a generalist),
  1 when all of its relative IoU falls on one type. Relative IoU rather than raw IoU, because a large
  feature's boxes give every map a high IoU; `max_share` = max_f p_f, `preferred_feature` = argmax.
- `head_rank_correlation`: Spearman's rho between the heads' IoU on two feature types (heads with a
  mean IoU on every included feature), with scipy's p-value: do the same heads find portals and
  windows?
- `top_heads`: the `top_k` heads per feature type.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .scores import check_columns

MODEL_KEYS = ["model", "variant", "method", "threshold"]
HEAD_KEYS = [*MODEL_KEYS[:3], "layer", "head", "threshold"]
FEATURE_IOU_COLUMNS = [*HEAD_KEYS, "feature", "n", "n_dropped", "mean_iou", "relative_iou", "rank"]
SPECIALISATION_COLUMNS = [*HEAD_KEYS, "n_features", "specialisation", "max_share", "preferred_feature"]
CORRELATION_COLUMNS = [*MODEL_KEYS, "feature_a", "feature_b", "n_heads", "rho", "p_value"]
TOP_HEAD_COLUMNS = [*MODEL_KEYS, "feature", "rank", "layer", "head", "mean_iou", "n"]


def head_feature_iou(features: pd.DataFrame, thresholds: Sequence[float] | None = None) -> pd.DataFrame:
    check_columns(features, ["image_id", "feature", *HEAD_KEYS, "iou", "scorable"], "per-feature alignment")
    rows = features[features["head"] >= 0]
    if thresholds is not None:
        rows = rows[rows["threshold"].isin(list(thresholds))]
    usable = rows["scorable"].to_numpy(dtype=bool) & rows["iou"].notna().to_numpy()
    frame = rows[[*HEAD_KEYS, "feature"]].copy()
    frame["usable"] = usable
    frame["usable_iou"] = np.where(usable, rows["iou"].to_numpy(dtype=np.float64), 0.0)
    grouped = frame.groupby([*HEAD_KEYS, "feature"], sort=True, observed=True)
    table = grouped.agg(present=("usable", "size"), n=("usable", "sum"), total=("usable_iou", "sum"))
    table = table.reset_index()
    table["n"] = table["n"].astype(np.int64)
    table["n_dropped"] = (table["present"] - table["n"]).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        table["mean_iou"] = np.where(table["n"] > 0, table["total"] / table["n"], np.nan)
    per_feature = [*MODEL_KEYS, "feature"]
    average_head = table.groupby(per_feature)["mean_iou"].transform("mean")
    with np.errstate(invalid="ignore", divide="ignore"):
        table["relative_iou"] = table["mean_iou"] / average_head
    table["rank"] = table.groupby(per_feature)["mean_iou"].rank(ascending=False, method="min")
    table["rank"] = table["rank"].astype("Int64")
    return table[FEATURE_IOU_COLUMNS]


def _included(table: pd.DataFrame, min_images: int) -> pd.DataFrame:
    """Rows of the feature types with at least `min_images` usable images for that model."""
    images = table.groupby([*MODEL_KEYS, "feature"])["n"].transform("max")
    return table[images >= min_images]


def normalised_entropy_specialisation(shares: np.ndarray) -> np.ndarray:
    """1 - H(p) / log(F) per row of non-negative weights (rows renormalised); NaN for F < 2."""
    shares = np.asarray(shares, dtype=np.float64)
    n_features = shares.shape[1]
    with np.errstate(invalid="ignore", divide="ignore"):
        p = shares / shares.sum(axis=1, keepdims=True)
        entropy = -np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0).sum(axis=1)
        index = 1 - entropy / np.log(n_features) if n_features >= 2 else np.full(len(shares), np.nan)
    return np.where(np.isfinite(p).all(axis=1), index, np.nan)


def head_specialisation(feature_iou: pd.DataFrame, min_images: int = 5) -> pd.DataFrame:
    parts = []
    for keys, group in _included(feature_iou, min_images).groupby(MODEL_KEYS, sort=True):
        wide = group.pivot_table(index=["layer", "head"], columns="feature", values="relative_iou",
                                 aggfunc="first", dropna=False)
        weights = wide.to_numpy(dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            shares = weights / weights.sum(axis=1, keepdims=True)
        best = np.where(np.isnan(shares).all(axis=1), -1, np.nanargmax(np.nan_to_num(shares, nan=-1), axis=1))
        part = wide.index.to_frame(index=False)
        for key, value in zip(MODEL_KEYS, keys):
            part[key] = value
        part["n_features"] = wide.shape[1]
        part["specialisation"] = normalised_entropy_specialisation(weights)
        part["max_share"] = np.nanmax(np.where(np.isnan(shares), -np.inf, shares), axis=1)
        part["max_share"] = part["max_share"].where(np.isfinite(part["max_share"]))
        part["preferred_feature"] = np.where(best >= 0, np.asarray(wide.columns, dtype=object)[best], None)
        parts.append(part)
    if not parts:
        return pd.DataFrame({column: [] for column in SPECIALISATION_COLUMNS})
    return pd.concat(parts, ignore_index=True)[SPECIALISATION_COLUMNS]


def head_rank_correlation(feature_iou: pd.DataFrame, min_images: int = 5) -> pd.DataFrame:
    rows = []
    for keys, group in _included(feature_iou, min_images).groupby(MODEL_KEYS, sort=True):
        wide = group.pivot_table(index=["layer", "head"], columns="feature", values="mean_iou",
                                 aggfunc="first", dropna=False).dropna()
        features = list(wide.columns)
        if len(features) < 2 or len(wide) < 3:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a constant column gives rho NaN, reported as such
            result = stats.spearmanr(wide.to_numpy(dtype=np.float64))
        rho = np.atleast_2d(result.statistic)
        p_value = np.atleast_2d(result.pvalue)
        if len(features) == 2:
            rho = np.array([[1.0, float(result.statistic)], [float(result.statistic), 1.0]])
            p_value = np.array([[0.0, float(result.pvalue)], [float(result.pvalue), 0.0]])
        for i, j in zip(*np.triu_indices(len(features), k=1)):
            rows.append({**dict(zip(MODEL_KEYS, keys)), "feature_a": features[i], "feature_b": features[j],
                         "n_heads": len(wide), "rho": rho[i, j], "p_value": p_value[i, j]})
    if not rows:
        return pd.DataFrame({column: [] for column in CORRELATION_COLUMNS})
    return pd.DataFrame(rows)[CORRELATION_COLUMNS]


def top_heads(feature_iou: pd.DataFrame, top_k: int = 5, min_images: int = 5) -> pd.DataFrame:
    included = _included(feature_iou, min_images).dropna(subset=["mean_iou"])
    ordered = included.sort_values([*MODEL_KEYS, "feature", "rank", "layer", "head"], kind="stable")
    best = ordered.groupby([*MODEL_KEYS, "feature"], sort=False).head(top_k)
    return best[TOP_HEAD_COLUMNS].reset_index(drop=True)
