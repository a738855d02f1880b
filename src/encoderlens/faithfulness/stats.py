"""Statistics of the faithfulness tables of one dataset, with the alignment study's machinery
(`stats.bootstrap`, `stats.paired`): the image is the sampling unit throughout.

- `faithfulness_summary`: mean deletion and insertion AUC per model x variant x map (method, layer,
  head) x order, with a seeded percentile bootstrap CI over images (unscorable maps dropped and
  counted), `small_n` below `min_n` images.
- `faithfulness_comparisons`: paired tests on the same images (paired t, Wilcoxon signed-rank,
  Cohen's d_z, bootstrap CI of the mean difference, Holm within each family = dataset's model x
  variant x kind x metric). Kinds: `random`, every map's own order against the random order of the
  same images (deletion: a negative difference means the map finds what matters faster than chance);
  `methods`, every pair of methods of a model, each through its head-mean map at its last stored layer
  (maps not per layer as they are), order `map`.
- `plausibility_faithfulness`: per model x variant x map, the mean IoU at the reference threshold
  (alignment.parquet, same images, same method, layer and head) and the mean deletion AUC (order
  `map`), each with its bootstrap CI, over the images where both are defined; Spearman's rho between
  the two over those images (`rho_images`); and per model x variant, Spearman's rho over its maps'
  means (`rho_maps`, one point per map; NaN below three maps). Deletion AUC: lower is more faithful,
  so a negative rho means more plausible maps are also more faithful.
"""

from __future__ import annotations

from itertools import combinations
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from encoderlens.stats.bootstrap import DEFAULT_MIN_N, bootstrap_mean_ci
from encoderlens.stats.paired import TEST_COLUMNS, holm, paired_tests

MAP = ["method", "layer", "head"]
METRICS = ("deletion_auc", "insertion_auc")
SUMMARY_COLUMNS = ["model", "variant", *MAP, "order", "metric", "n", "n_dropped", "mean", "ci_low",
                   "ci_high", "small_n"]
COMPARISON_COLUMNS = ["family", "model", "variant", "kind", "metric", "method_a", "layer_a", "head_a", "order_a",
                      "method_b", "layer_b", "head_b", "order_b", *TEST_COLUMNS, "diff_ci_low", "diff_ci_high",
                      "family_size", "p_ttest_holm", "p_wilcoxon_holm", "reject_ttest", "reject_wilcoxon",
                      "small_n"]
PLAUSIBILITY_COLUMNS = ["model", "variant", *MAP, "threshold", "n", "iou_mean", "iou_ci_low", "iou_ci_high",
                        "deletion_mean", "deletion_ci_low", "deletion_ci_high", "rho_images", "p_images",
                        "n_maps", "rho_maps", "p_maps", "small_n"]


def _resampling(settings: dict) -> dict:
    return {"n_resamples": settings["n_resamples"], "confidence": settings["confidence"], "seed": settings["seed"]}


def _matrix(table: pd.DataFrame, keys: list[str], metric: str) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    """(one row per key combination, (G, images) values with NaN where missing, image ids)."""
    images = sorted(table["image_id"].astype(str).unique())
    pivot = table.set_index([*keys, "image_id"])[metric].astype(np.float64).unstack("image_id")
    pivot = pivot.reindex(columns=images)
    return pivot.index.to_frame(index=False), pivot.to_numpy(dtype=np.float64), images


def faithfulness_summary(table: pd.DataFrame, settings: dict) -> pd.DataFrame:
    parts = []
    min_n = settings.get("min_n", DEFAULT_MIN_N)
    for (model, variant), frame in table.groupby(["model", "variant"], sort=False):
        for metric in METRICS:
            keys, values, images = _matrix(frame, [*MAP, "order"], metric)
            present = _matrix(frame.assign(present=1.0), [*MAP, "order"], "present")[1]
            intervals = bootstrap_mean_ci(values, images, **_resampling(settings))
            parts.append(keys.assign(model=model, variant=variant, metric=metric, n=intervals.n.astype(np.int64),
                                     n_dropped=(np.nan_to_num(present).sum(axis=1) - intervals.n).astype(np.int64),
                                     mean=intervals.mean, ci_low=intervals.ci_low, ci_high=intervals.ci_high,
                                     small_n=intervals.n < min_n))
    if not parts:
        return pd.DataFrame({column: [] for column in SUMMARY_COLUMNS})
    return pd.concat(parts, ignore_index=True)[SUMMARY_COLUMNS]


def representative_maps(keys: pd.DataFrame) -> pd.DataFrame:
    """Per method: its head-mean map (or its map without heads) at its last stored layer."""
    means = keys[keys["head"] == -1]
    last = means.groupby("method", sort=False)["layer"].transform("max")
    return means[means["layer"] == last].drop_duplicates(subset=["method"])


def _test(a: np.ndarray, b: np.ndarray, images: list[str], settings: dict) -> pd.DataFrame:
    result = paired_tests(a, b)
    differences = np.where(np.isnan(a) | np.isnan(b), np.nan, a - b)
    intervals = bootstrap_mean_ci(differences, images, **_resampling(settings))
    result["diff_ci_low"], result["diff_ci_high"] = intervals.ci_low, intervals.ci_high
    return result


def faithfulness_comparisons(table: pd.DataFrame, settings: dict) -> pd.DataFrame:
    rows = []
    for (model, variant), frame in table.groupby(["model", "variant"], sort=False):
        for metric in METRICS:
            keys, values, images = _matrix(frame, [*MAP, "order"], metric)
            index = {tuple(key): row for row, key in enumerate(keys.itertuples(index=False))}
            pairs = []
            for key in keys[keys["order"] != "random"].itertuples(index=False):
                random_key = (*key[:3], "random")
                if random_key in index:
                    pairs.append(("random", index[tuple(key)], index[random_key]))
            chosen = representative_maps(keys[keys["order"] == "map"])
            for first, second in combinations(chosen.itertuples(index=False), 2):
                pairs.append(("methods", index[tuple(first)], index[tuple(second)]))
            for kind in ("random", "methods"):
                mine = [(a, b) for k, a, b in pairs if k == kind]
                if not mine:
                    continue
                a_rows, b_rows = np.array([a for a, _ in mine]), np.array([b for _, b in mine])
                tests = _test(values[a_rows], values[b_rows], images, settings)
                left, right = keys.iloc[a_rows].reset_index(drop=True), keys.iloc[b_rows].reset_index(drop=True)
                identity = pd.DataFrame({
                    "family": "/".join([model, variant, kind, metric]), "model": model, "variant": variant,
                    "kind": kind, "metric": metric,
                    **{f"{column}_a": left[column] for column in [*MAP, "order"]},
                    **{f"{column}_b": right[column] for column in [*MAP, "order"]}})
                rows.append(pd.concat([identity, tests], axis=1))
    if not rows:
        return pd.DataFrame({column: [] for column in COMPARISON_COLUMNS})
    result = pd.concat(rows, ignore_index=True)
    result["family_size"] = result.groupby("family")["family"].transform("size").astype(np.int64)
    result["small_n"] = result["n_pairs"] < settings.get("min_n", DEFAULT_MIN_N)
    for test in ("ttest", "wilcoxon"):
        result[f"p_{test}_holm"] = np.nan
        result[f"reject_{test}"] = False
    for _, members in result.groupby("family", sort=False).groups.items():
        for test in ("ttest", "wilcoxon"):
            adjusted, reject = holm(result.loc[members, f"p_{test}"].to_numpy(dtype=np.float64),
                                    settings["alpha"])
            result.loc[members, f"p_{test}_holm"] = adjusted
            result.loc[members, f"reject_{test}"] = reject
    return result[COMPARISON_COLUMNS]


def _spearman(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    usable = ~np.isnan(x) & ~np.isnan(y)
    x, y = x[usable], y[usable]
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return np.nan, np.nan
    result = scipy_stats.spearmanr(x, y)
    return float(result.statistic), float(result.pvalue)


def plausibility_faithfulness(table: pd.DataFrame, alignment: pd.DataFrame, threshold: float,
                              settings: dict) -> pd.DataFrame:
    """One row per map scored for both plausibility and faithfulness (order map, deletion AUC)."""
    alignment = alignment[np.isclose(alignment["threshold"].astype(float), float(threshold))]
    alignment = alignment.assign(iou=np.where(alignment["scorable"], alignment["iou"], np.nan))
    mapped = table[table["order"] == "map"]
    joined = mapped.merge(alignment[["image_id", "model", "variant", *MAP, "iou"]],
                          on=["image_id", "model", "variant", *MAP], how="inner")
    rows = []
    min_n = settings.get("min_n", DEFAULT_MIN_N)
    for (model, variant), frame in joined.groupby(["model", "variant"], sort=False):
        both = frame.assign(iou=np.where(frame["deletion_auc"].isna(), np.nan, frame["iou"]),
                            deletion_auc=np.where(frame["iou"].isna(), np.nan, frame["deletion_auc"]))
        keys, iou, images = _matrix(both, MAP, "iou")
        _, deletion, _ = _matrix(both, MAP, "deletion_auc")
        iou_ci = bootstrap_mean_ci(iou, images, **_resampling(settings))
        deletion_ci = bootstrap_mean_ci(deletion, images, **_resampling(settings))
        correlations = [_spearman(iou[row], deletion[row]) for row in range(len(keys))]
        rho_maps, p_maps = _spearman(iou_ci.mean, deletion_ci.mean)
        rows.append(keys.assign(
            model=model, variant=variant, threshold=float(threshold), n=iou_ci.n.astype(np.int64),
            iou_mean=iou_ci.mean, iou_ci_low=iou_ci.ci_low, iou_ci_high=iou_ci.ci_high,
            deletion_mean=deletion_ci.mean, deletion_ci_low=deletion_ci.ci_low,
            deletion_ci_high=deletion_ci.ci_high, rho_images=[c[0] for c in correlations],
            p_images=[c[1] for c in correlations], n_maps=int(np.isfinite(iou_ci.mean).sum()),
            rho_maps=rho_maps, p_maps=p_maps, small_n=iou_ci.n < min_n))
    if not rows:
        return pd.DataFrame({column: [] for column in PLAUSIBILITY_COLUMNS})
    return pd.concat(rows, ignore_index=True)[PLAUSIBILITY_COLUMNS]


def read_tables(paths: Sequence, what: str) -> pd.DataFrame:
    tables = []
    for path in paths:
        try:
            tables.append(pd.read_parquet(path))
        except Exception as error:
            raise ValueError(f"{path}: cannot read the {what} table: {error}") from error
    if not tables:
        raise ValueError(f"no {what} tables given")
    return pd.concat(tables, ignore_index=True)


def faithfulness_statistics(faithfulness_paths: Sequence, alignment_paths: Sequence,
                            settings: dict) -> dict[str, pd.DataFrame]:
    """{"summary", "comparisons", "plausibility"}; settings: the config's stats values and the
    reference `threshold` of the IoU."""
    table = read_tables(faithfulness_paths, "faithfulness")
    alignment = read_tables(alignment_paths, "alignment")
    for frame in (table, alignment):
        frame["image_id"] = frame["image_id"].astype(str)
    return {"summary": faithfulness_summary(table, settings),
            "comparisons": faithfulness_comparisons(table, settings),
            "plausibility": plausibility_faithfulness(table, alignment, settings["threshold"], settings)}
