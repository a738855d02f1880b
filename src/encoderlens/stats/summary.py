"""Mean IoU, coverage and pointing-game rate per map with a percentile bootstrap CI over images.

One row per (model, variant, method, layer, head, threshold, metric): `n` usable images, `n_dropped`
rows present but unusable (unscorable or NaN score), `mean`, `ci_low`, `ci_high`, and `small_n`: True
where n < min_n (config `stats.min_n`), so the CI rests on too few images to be read as one. Baselines are
summarised like any model (model "baseline"). Coverage and the pointing game do not depend on the
threshold; their rows repeat across thresholds with identical numbers (identical rows are
bootstrapped once).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from .bootstrap import DEFAULT_CONFIDENCE, DEFAULT_MIN_N, DEFAULT_RESAMPLES, bootstrap_mean_ci
from .scores import MAP_KEYS, METRICS, ScoreMatrix

SUMMARY_COLUMNS = [*MAP_KEYS, "metric", "n", "n_dropped", "mean", "ci_low", "ci_high", "small_n"]


def summarise_alignment(matrix: ScoreMatrix, metrics: Sequence[str] = METRICS,
                        n_resamples: int = DEFAULT_RESAMPLES, confidence: float = DEFAULT_CONFIDENCE,
                        seed: int = 0, min_n: int = DEFAULT_MIN_N) -> pd.DataFrame:
    metrics = list(metrics)
    columns = {name: [] for name in ("n", "n_dropped", "mean", "ci_low", "ci_high")}
    for metric in metrics:
        intervals = bootstrap_mean_ci(matrix.values[metric], matrix.image_ids, n_resamples=n_resamples,
                                      confidence=confidence, seed=seed)
        columns["n"].append(intervals.n)
        columns["n_dropped"].append(matrix.n_dropped(metric))
        columns["mean"].append(intervals.mean)
        columns["ci_low"].append(intervals.ci_low)
        columns["ci_high"].append(intervals.ci_high)
    if not metrics or matrix.keys.empty:
        return pd.DataFrame({column: [] for column in SUMMARY_COLUMNS})
    # rows map-major, the metrics of one map together, in the maps' sorted order
    summary = matrix.keys.loc[matrix.keys.index.repeat(len(metrics))].reset_index(drop=True)
    summary["metric"] = np.tile(np.array(metrics, dtype=object), len(matrix.keys))
    for name, per_metric in columns.items():
        summary[name] = np.stack(per_metric, axis=1).ravel()
    summary["n"] = summary["n"].astype(np.int64)
    summary["n_dropped"] = summary["n_dropped"].astype(np.int64)
    summary["small_n"] = summary["n"] < min_n
    return summary[SUMMARY_COLUMNS]
