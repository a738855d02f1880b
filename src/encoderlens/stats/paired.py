"""Paired comparisons of two maps on the same images, and Holm's correction over a family.

`paired_test(a, b)`: a and b are per-image scores aligned by image, NaN where a map has no usable
score; only images usable in both form pairs, the rest are counted in `n_dropped`. Differences are
a - b. Reported: the paired t-test (scipy.stats.ttest_rel), the Wilcoxon signed-rank test
(scipy.stats.wilcoxon, its defaults: zero differences discarded, exact p for small samples without
ties, else the normal approximation), Cohen's d_z = mean(d) / sd(d) (sd with n - 1), with the
number of pairs.

Degenerate cases get defined values and a `note`, never a silent NaN:
- no pairs: every statistic NaN ("no pairs");
- one pair: t, p_ttest, d_z NaN (no variance estimate); Wilcoxon p = 1 ("one pair");
- every difference exactly zero: the maps agree on every image; t = 0, p = 1, d_z = 0, Wilcoxon
  p = 1 ("all differences zero"), e.g. a linear-probe variant whose backbone is the frozen one;
- differences constant but not zero (equal up to rounding): sd = 0, so t and d_z are +-inf and
  p_ttest = 0, the limit of the test ("zero variance of differences"); Wilcoxon as scipy gives it.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats

TEST_COLUMNS = ["n_pairs", "n_dropped", "mean_a", "mean_b", "mean_diff", "sd_diff", "t", "p_ttest",
                "wilcoxon_w", "p_wilcoxon", "cohens_dz", "note"]


def paired_test(a, b) -> dict:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired scores must be two 1-D arrays of the same length, got {a.shape}, {b.shape}")
    pairs = ~np.isnan(a) & ~np.isnan(b)
    a, b = a[pairs], b[pairs]
    n = int(pairs.sum())
    result = dict.fromkeys(TEST_COLUMNS, np.nan)
    result.update(n_pairs=n, n_dropped=int(len(pairs) - n), note="")
    if n == 0:
        result["note"] = "no pairs"
        return result
    differences = a - b
    result.update(mean_a=a.mean(), mean_b=b.mean(), mean_diff=differences.mean())
    if n == 1:
        result.update(sd_diff=np.nan, wilcoxon_w=0.0, p_wilcoxon=1.0,
                      note="one pair")
        return result
    sd = differences.std(ddof=1)
    result["sd_diff"] = sd
    if np.all(differences == 0):
        result.update(sd_diff=0.0, t=0.0, p_ttest=1.0, wilcoxon_w=0.0, p_wilcoxon=1.0, cohens_dz=0.0,
                      note="all differences zero")
        return result
    with warnings.catch_warnings():
        # the degenerate cases are recorded in `note`; scipy's warnings would only repeat them
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)
        ttest = stats.ttest_rel(a, b)
        wilcoxon = stats.wilcoxon(a, b)
    result.update(t=float(ttest.statistic), p_ttest=float(ttest.pvalue),
                  wilcoxon_w=float(wilcoxon.statistic), p_wilcoxon=float(wilcoxon.pvalue))
    if _constant(differences[None])[0]:
        result.update(_zero_variance(result["mean_diff"]))
    else:
        result["cohens_dz"] = result["mean_diff"] / sd
    return result


def _constant(differences: np.ndarray) -> np.ndarray:
    """Per row: the differences are equal up to rounding (their spread is a few ulps), so the sample
    sd is 0 or rounding noise that would turn t and d_z into meaningless huge numbers."""
    scale = np.abs(differences).max(axis=1)
    return np.ptp(differences, axis=1) <= 64 * np.finfo(np.float64).eps * scale


def _zero_variance(mean_diff: float) -> dict:
    limit = float(np.copysign(np.inf, mean_diff))
    return {"sd_diff": 0.0, "t": limit, "p_ttest": 0.0, "cohens_dz": limit,
            "note": "zero variance of differences"}


def holm(pvalues, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """(Holm-adjusted p, reject at family-wise alpha) over the finite p-values of one family; NaN p
    stay NaN and are left out of the family (an undefined test cannot be rejected).

    The same step-down as statsmodels' `multipletests(method="holm")` (the tests check equality),
    written out because that call runs a full `gc.collect()` each time: 0.2 s per family in a
    process holding large tables, minutes over a study's hundreds of families.
    """
    pvalues = np.asarray(pvalues, dtype=np.float64)
    adjusted = np.full(pvalues.shape, np.nan)
    reject = np.zeros(pvalues.shape, dtype=bool)
    defined = np.flatnonzero(np.isfinite(pvalues))
    m = len(defined)
    if m == 0:
        return adjusted, reject
    order = defined[np.argsort(pvalues[defined], kind="stable")]
    stepped = np.maximum.accumulate(pvalues[order] * np.arange(m, 0, -1))
    adjusted[order] = np.minimum(stepped, 1.0)
    passes = pvalues[order] <= alpha / np.arange(m, 0, -1)
    first_failure = m if passes.all() else int(np.argmin(passes))
    reject[order[:first_failure]] = True
    return adjusted, reject


# scipy.stats.wilcoxon(method="auto") uses the normal approximation for more than 50 pairs whatever
# the data, so such tests give the same p computed one by one or as a batch; smaller ones may take
# the exact or the permutation path depending on ties, decided over the whole batch, so they run one
# at a time.
_BATCH_MIN_PAIRS = 51


def paired_tests(a, b, considered=None) -> pd.DataFrame:
    """`paired_test` for each row of two (k, n) matrices (TEST_COLUMNS, one row per test).

    `considered` (k, n) bool: the images a test looks at (default all); images considered but not
    usable in both rows count in `n_dropped`. Same numbers as `paired_test` row by row; tests with
    many pairs and the same pairs run as one vectorised scipy call.
    """
    a = np.atleast_2d(np.asarray(a, dtype=np.float64))
    b = np.atleast_2d(np.asarray(b, dtype=np.float64))
    if a.shape != b.shape:
        raise ValueError(f"paired score matrices differ in shape: {a.shape} vs {b.shape}")
    considered = np.ones(a.shape, dtype=bool) if considered is None else np.asarray(considered, dtype=bool)
    pairs = considered & ~np.isnan(a) & ~np.isnan(b)
    n_pairs = pairs.sum(axis=1)
    with np.errstate(invalid="ignore"):
        differences = np.where(pairs, a - b, 0.0)
    batched = (n_pairs >= _BATCH_MIN_PAIRS) & (differences != 0).any(axis=1)
    results: list[dict | None] = [None] * len(a)
    for row in np.flatnonzero(~batched):
        keep = considered[row]
        results[row] = paired_test(a[row][keep], b[row][keep])
    if batched.any():
        rows = np.flatnonzero(batched)
        masks = np.packbits(pairs[rows], axis=1)
        _, pattern = np.unique(masks.view(np.dtype((np.void, masks.shape[1]))).ravel(), return_inverse=True)
        for code in np.unique(pattern):
            members = rows[pattern.ravel() == code]
            columns = np.flatnonzero(pairs[members[0]])
            for row, result in zip(members, _batch(a[np.ix_(members, columns)], b[np.ix_(members, columns)])):
                result["n_dropped"] = int(considered[row].sum() - len(columns))
                results[row] = result
    return pd.DataFrame(results, columns=TEST_COLUMNS)


def _batch(a: np.ndarray, b: np.ndarray) -> list[dict]:
    """Tests of rows with the same pairs (all usable), at least one non-zero difference each."""
    differences = a - b
    sd = differences.std(axis=1, ddof=1)
    mean_diff = differences.mean(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ttest = stats.ttest_rel(a, b, axis=1)
        wilcoxon = stats.wilcoxon(a, b, axis=1)
        cohens_dz = mean_diff / np.where(sd > 0, sd, np.nan)
    mean_a, mean_b = a.mean(axis=1), b.mean(axis=1)
    constant = _constant(differences)
    results = []
    for k in range(len(a)):
        result = {"n_pairs": a.shape[1], "n_dropped": 0, "mean_a": mean_a[k], "mean_b": mean_b[k],
                  "mean_diff": mean_diff[k], "sd_diff": sd[k], "t": float(ttest.statistic[k]),
                  "p_ttest": float(ttest.pvalue[k]), "wilcoxon_w": float(wilcoxon.statistic[k]),
                  "p_wilcoxon": float(wilcoxon.pvalue[k]), "cohens_dz": float(cohens_dz[k]), "note": ""}
        if constant[k]:
            result.update(_zero_variance(mean_diff[k]))
        results.append(result)
    return results
