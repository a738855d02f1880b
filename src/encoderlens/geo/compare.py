"""Models compared on the same images: representation similarity and paired tests on the same queries.

- `linear_cka(x, y)`: linear centred kernel alignment (Kornblith et al. 2019, "Similarity of neural
  network representations revisited", eq. for the linear kernel in feature space):
  CKA = ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F), Xc and Yc the column-centred (n, d)
  representations of the same n images. Invariant to orthogonal transforms and isotropic scaling of
  either side; 1 for a rotation of the same representation. Computed in whichever space is smaller
  (feature covariances d x d, or Gram matrices n x n; both give the same value), in float64.
- `mcnemar_test(correct_a, correct_b)`: McNemar's test of equal top-1 correctness on paired queries,
  from the discordant counts b (a right, b wrong) and c (a wrong, b right): the exact binomial
  two-sided p (min(1, 2 * Binom(min(b, c); b + c, 1/2))) when b + c < 25, else the chi-square
  statistic with continuity correction (|b - c| - 1)^2 / (b + c) on one degree of freedom, as
  statsmodels' `mcnemar(table, exact=..., correction=True)` computes them.
- `paired_bootstrap_difference(a, b, ids)`: the mean of the per-query difference a - b with a
  seeded percentile bootstrap CI over queries (the same resamples as `stats.bootstrap`) and the
  two-sided bootstrap p of "mean difference = 0" from the null-centred resamples,
  p = (1 + #{|d* - mean| >= |mean|}) / (B + 1).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import stats

from ..stats.bootstrap import (DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES, _interval_quantiles,
                               resample_counts, resample_generator)

# McNemar: exact binomial below this many discordant pairs, chi-square with continuity correction at
# or above it (the usual rule; statsmodels leaves the choice to the caller)
MCNEMAR_EXACT_BELOW = 25


def _centred(matrix) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError(f"a representation must be (images, features), got shape {matrix.shape}")
    if not np.isfinite(matrix).all():
        raise ValueError("a representation holds NaN or infinite values")
    return matrix - matrix.mean(axis=0, keepdims=True)


def linear_cka(x, y) -> float:
    """Linear CKA between two representations (n, d1) and (n, d2) of the same n images (rows
    aligned). NaN when either side is constant over the images (no variance to align)."""
    xc, yc = _centred(x), _centred(y)
    if xc.shape[0] != yc.shape[0]:
        raise ValueError(f"CKA needs the same images on both sides, got {xc.shape[0]} and {yc.shape[0]} rows")
    if xc.shape[0] < 2:
        raise ValueError("CKA needs at least 2 images")
    n = xc.shape[0]
    if n < max(xc.shape[1], yc.shape[1]):
        kx, ky = xc @ xc.T, yc @ yc.T  # centred Gram matrices: <Kx, Ky>_F = ||Yc^T Xc||_F^2
        cross, norm_x, norm_y = float(np.sum(kx * ky)), np.linalg.norm(kx), np.linalg.norm(ky)
    else:
        cross = float(np.linalg.norm(yc.T @ xc) ** 2)
        norm_x, norm_y = np.linalg.norm(xc.T @ xc), np.linalg.norm(yc.T @ yc)
    if norm_x == 0 or norm_y == 0:
        return float("nan")
    return cross / (norm_x * norm_y)


def mcnemar_test(correct_a, correct_b) -> dict:
    """McNemar's test on paired booleans (True = query answered right). Returns the discordant
    counts, the statistic (min(b, c) for the exact test, the corrected chi-square otherwise), p,
    the accuracy of each side and which test was used."""
    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"McNemar needs two 1-D boolean arrays of the same length, got {a.shape}, {b.shape}")
    only_a = int(np.sum(a & ~b))
    only_b = int(np.sum(~a & b))
    discordant = only_a + only_b
    result = {"n_pairs": int(a.size), "only_a_right": only_a, "only_b_right": only_b,
              "accuracy_a": float(a.mean()) if a.size else float("nan"),
              "accuracy_b": float(b.mean()) if b.size else float("nan")}
    if discordant == 0:
        return {**result, "test": "none", "statistic": float("nan"), "p_value": 1.0}
    if discordant < MCNEMAR_EXACT_BELOW:
        smaller = min(only_a, only_b)
        p = min(1.0, 2.0 * stats.binom.cdf(smaller, discordant, 0.5))
        return {**result, "test": "exact", "statistic": float(smaller), "p_value": float(p)}
    chi2 = (abs(only_a - only_b) - 1.0) ** 2 / discordant
    return {**result, "test": "chi2_corrected", "statistic": float(chi2),
            "p_value": float(stats.chi2.sf(chi2, 1))}


def paired_bootstrap_difference(a, b, ids: Sequence | None = None, n_resamples: int = DEFAULT_RESAMPLES,
                                confidence: float = DEFAULT_CONFIDENCE, seed: int = 0) -> dict:
    """Mean of a - b over the queries usable on both sides (NaN on either side drops the query),
    its percentile bootstrap CI and the two-sided bootstrap p of a zero mean difference."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired scores must be two 1-D arrays of the same length, got {a.shape}, {b.shape}")
    ids = list(range(a.size)) if ids is None else list(ids)
    if len(ids) != a.size:
        raise ValueError(f"{len(ids)} ids for {a.size} paired scores")
    usable = np.isfinite(a) & np.isfinite(b)
    diff = (a - b)[usable]
    n = int(diff.size)
    result = {"n_pairs": n, "n_dropped": int(a.size - n), "mean_a": float("nan"), "mean_b": float("nan"),
              "mean_diff": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"),
              "p_bootstrap": float("nan")}
    if n == 0:
        return result
    mean = float(diff.mean())
    result.update(mean_a=float(a[usable].mean()), mean_b=float(b[usable].mean()), mean_diff=mean)
    if n < 2:
        return result
    kept_ids = [i for i, keep in zip(ids, usable) if keep]
    counts = resample_counts(n, n_resamples, resample_generator(seed, kept_ids))
    means = counts @ diff / n
    low, high = np.quantile(means, _interval_quantiles(confidence))
    extreme = int(np.sum(np.abs(means - mean) >= abs(mean)))
    result.update(ci_low=float(low), ci_high=float(high), p_bootstrap=(1 + extreme) / (n_resamples + 1))
    return result
