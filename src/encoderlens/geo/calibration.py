"""The target curve of distance-calibrated fine-tuning: what cosine a pair of images *should* have at
a given great-circle distance.

The curve is fitted to the frozen model's own behaviour, so calibration sharpens what the encoder
already knows instead of imposing an arbitrary shape: per distance bin, the mean cosine of the frozen
embeddings' pairs; then the monotone decreasing (isotonic) fit of those means, weighted by the pairs
per bin, because nearer places should never be less similar than farther ones. Between bin centres
the curve is linear in log(1 + d); beyond the outermost centres it is flat.

A bin's centre is the geometric mean of its edges (the midpoint of a log-spaced bin), with 1 km
standing in for a 0 km lower edge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class TargetCurve:
    """Piecewise-linear in log(1 + distance): knots at `distance_km` with values `cosine`."""

    distance_km: np.ndarray
    cosine: np.ndarray

    def __call__(self, distance_km) -> np.ndarray:
        x = np.log1p(np.asarray(distance_km, dtype=np.float64))
        return np.interp(x, np.log1p(self.distance_km), self.cosine)

    def to_table(self) -> pd.DataFrame:
        return pd.DataFrame({"distance_km": self.distance_km, "target_cosine": self.cosine})


def bin_centres_km(lo_km, hi_km) -> np.ndarray:
    lo = np.maximum(np.asarray(lo_km, dtype=np.float64), 1.0)
    hi = np.maximum(np.asarray(hi_km, dtype=np.float64), lo)
    return np.sqrt(lo * hi)


def fit_target_curve(bins: pd.DataFrame) -> TargetCurve:
    """Monotone decreasing curve from a `binned_cosine` table (lo_km, hi_km, count, cosine_mean).

    Empty bins are ignored; at least one non-empty bin is needed.
    """
    from sklearn.isotonic import IsotonicRegression

    used = bins[bins["count"] > 0].sort_values("lo_km")
    if used.empty:
        raise ValueError("no distance bin holds a pair: the target curve needs at least one")
    centres = bin_centres_km(used["lo_km"], used["hi_km"])
    fit = IsotonicRegression(increasing=False).fit(np.log1p(centres), used["cosine_mean"].to_numpy(),
                                                   sample_weight=used["count"].to_numpy(dtype=np.float64))
    return TargetCurve(distance_km=centres, cosine=fit.predict(np.log1p(centres)))


def collapse_report(embeddings) -> dict:
    """Signs of collapse in a set of embeddings: per-dimension std of the L2-normalised vectors
    (mean over dimensions) and the effective rank / participation ratio of their covariance."""
    from .geometry import anisotropy

    x = np.asarray(embeddings, dtype=np.float64)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    spectrum = anisotropy(x, normalise=True)
    return {"embedding_std": float(unit.std(axis=0).mean()),
            "effective_rank": float(spectrum["effective_rank"]),
            "participation_ratio": float(spectrum["participation_ratio"]),
            "mean_pairwise_cosine": float(spectrum["mean_pairwise_cosine"])}


COLLAPSE_DROP = 0.5  # a calibrated set whose effective rank or spread halves is flagged as collapsing


def calibration_summary(frozen: dict, calibrated: dict) -> pd.DataFrame:
    """One row per metric with the frozen and calibrated values and the change, and whether the
    calibrated embeddings show collapse (effective rank or per-dimension spread below half of frozen).

    Each dict holds: geoscore, median_km (kNN top-1 on the held-out queries), pearson_r, spearman_rho
    (cosine vs distance), and the `collapse_report` keys.
    """
    keys = ("geoscore", "median_km", "pearson_r", "spearman_rho", "embedding_std", "effective_rank",
            "participation_ratio", "mean_pairwise_cosine")
    table = pd.DataFrame([{"metric": key, "frozen": float(frozen[key]), "calibrated": float(calibrated[key]),
                           "change": float(calibrated[key]) - float(frozen[key])} for key in keys])
    collapsing = any(calibrated[key] < COLLAPSE_DROP * frozen[key] for key in ("effective_rank", "embedding_std"))
    return table.assign(collapse=collapsing)


def variant_metrics(knn: pd.DataFrame, geometry: pd.DataFrame, embeddings, feature: str) -> dict:
    """The calibration summary's inputs for one variant: kNN top-1 on the held-out queries, the
    cosine–distance correlations of the geometry study, and the collapse report of the embeddings."""
    top1 = knn[(knn["features"] == feature) & (knn["method"] == "top1")]
    shape = geometry[geometry["features"] == feature]
    if len(top1) != 1 or len(shape) != 1:
        raise ValueError(f"expected one top-1 kNN row and one geometry row for features {feature!r}, "
                         f"got {len(top1)} and {len(shape)}")
    return {"geoscore": top1["geoscore"].iloc[0], "median_km": top1["median_km"].iloc[0],
            "pearson_r": shape["pearson_r"].iloc[0], "spearman_rho": shape["spearman_rho"].iloc[0],
            **collapse_report(embeddings)}
