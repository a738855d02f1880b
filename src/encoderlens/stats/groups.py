"""A score broken down by a grouping (continent, country, land cover, ...): per-group means with
bootstrap CIs, the group's share of the sample, a test of no difference across groups and pairwise
tests with Holm's correction.

- Per group: n, share of the scored rows, mean with a seeded percentile bootstrap CI (resampling
  within the group; its row ids seed the draws, as in `stats.bootstrap`), drawn in chunks so that a
  group of a million rows needs no (resamples x rows) matrix.
- Across groups: the Kruskal-Wallis H test (scipy.stats.kruskal) over the groups with at least
  `min_n` scores; NaN when fewer than two groups qualify or every score is equal.
- Pairwise: two-sided Mann-Whitney U (scipy.stats.mannwhitneyu) between every pair of qualifying
  groups, Holm-adjusted over the pairs of one breakdown (`stats.paired.holm`), with the difference
  of means and the rank-biserial effect size r = 2U/(n1 n2) - 1 (U of the first group: positive when
  the first group's scores tend to be larger).
NaN scores are dropped and counted; a group below `min_n` is reported with `below_min_n` set and
left out of the tests.
"""

from __future__ import annotations

import itertools
import warnings
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .bootstrap import (DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES, _interval_quantiles, resample_generator)
from .paired import holm

# indices drawn at once by `bootstrap_interval` (8 bytes each): 256 MB
DRAWS_PER_CHUNK = 32_000_000


def bootstrap_interval(values: np.ndarray, ids: Sequence, n_resamples: int = DEFAULT_RESAMPLES,
                       confidence: float = DEFAULT_CONFIDENCE, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of one sample of any size, in bounded memory: the
    resamples are drawn in chunks of rows from the generator `resample_generator(seed, ids)`, which
    gives the same draws as one (n_resamples, n) call, i.e. scipy.stats.bootstrap's."""
    values = np.asarray(values, dtype=np.float64)
    n = values.size
    if n < 2:
        return float("nan"), float("nan")
    rng = resample_generator(seed, ids)
    rows = max(1, DRAWS_PER_CHUNK // n)
    means = np.empty(n_resamples)
    for start in range(0, n_resamples, rows):
        stop = min(n_resamples, start + rows)
        means[start:stop] = values[rng.integers(0, n, (stop - start, n))].mean(axis=1)
    low, high = np.quantile(means, _interval_quantiles(confidence))
    return float(low), float(high)


def group_summary(values, groups, ids: Sequence | None = None, min_n: int = 2,
                  n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> pd.DataFrame:
    """One row per group: group, n, n_dropped, share, mean, ci_low, ci_high, below_min_n."""
    values = np.asarray(values, dtype=np.float64)
    groups = np.asarray(groups, dtype=object)
    if values.shape != groups.shape or values.ndim != 1:
        raise ValueError(f"values and groups must be 1-D of one length, got {values.shape}, {groups.shape}")
    ids = np.asarray(list(range(values.size)) if ids is None else list(ids), dtype=object)
    scored = np.isfinite(values)
    total = int(scored.sum())
    rows = []
    for group in sorted(pd.unique(groups), key=str):
        members = groups == group
        usable = members & scored
        n = int(usable.sum())
        row = {"group": group, "n": n, "n_dropped": int(members.sum() - n),
               "share": n / total if total else float("nan"), "mean": float("nan"),
               "ci_low": float("nan"), "ci_high": float("nan"), "below_min_n": n < min_n}
        if n:
            low, high = bootstrap_interval(values[usable], list(ids[usable]), n_resamples=n_resamples, seed=seed)
            row.update(mean=float(values[usable].mean()), ci_low=low, ci_high=high)
        rows.append(row)
    return pd.DataFrame(rows)


def group_tests(values, groups, min_n: int = 2, alpha: float = 0.05) -> tuple[dict, pd.DataFrame]:
    """(Kruskal-Wallis across the qualifying groups, pairwise Mann-Whitney with Holm)."""
    values = np.asarray(values, dtype=np.float64)
    groups = np.asarray(groups, dtype=object)
    scored = np.isfinite(values)
    samples = {}
    for group in sorted(pd.unique(groups[scored]), key=str):
        sample = values[scored & (groups == group)]
        if sample.size >= min_n:
            samples[group] = sample
    overall = {"n_groups": len(samples), "kruskal_h": float("nan"), "p_kruskal": float("nan")}
    pairs = []
    if len(samples) >= 2:
        pooled = np.concatenate(list(samples.values()))
        if np.ptp(pooled) > 0:
            h, p = stats.kruskal(*samples.values())
            overall.update(kruskal_h=float(h), p_kruskal=float(p))
        for first, second in itertools.combinations(samples, 2):
            a, b = samples[first], samples[second]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                u, p = stats.mannwhitneyu(a, b, alternative="two-sided")
            if np.ptp(np.concatenate([a, b])) == 0:
                p = 1.0
            pairs.append({"group_a": first, "group_b": second, "n_a": a.size, "n_b": b.size,
                          "mean_diff": float(a.mean() - b.mean()), "mannwhitney_u": float(u),
                          "rank_biserial": float(2 * u / (a.size * b.size) - 1), "p_value": float(p)})
    table = pd.DataFrame(pairs, columns=["group_a", "group_b", "n_a", "n_b", "mean_diff", "mannwhitney_u",
                                         "rank_biserial", "p_value"])
    adjusted, reject = holm(table["p_value"].to_numpy(), alpha=alpha)
    table["p_holm"] = adjusted
    table["reject_holm"] = reject
    return overall, table
