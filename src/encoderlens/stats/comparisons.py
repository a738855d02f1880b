"""Paired comparisons between maps on the same images, in families corrected by Holm's method.

Which map stands for a model: the head-mean map (head -1) of one method, at one layer.
- scope "primary": each model's first method in `method_preference` (by default the CLS map for ViTs
  with a CLS token, the attention received for SigLIP, Grad-CAM for CNNs), so every model enters;
  a method name as scope ("cls", "rollout", ...) compares only the models that have that method.
- layer choice "last": the deepest layer the method was stored for (layer-less methods: their one
  map); "best": the layer with the highest mean score at that threshold on these images. The best
  layer is chosen on the same images it is tested on, which favours every model alike; read its
  p-values as descriptive.

Kinds of comparison, each a set of families; a family is one (kind, variant, scope, layer choice,
metric, threshold), and Holm's correction runs over the tests of one family:
- "models": every pair of models, same variant;
- "baselines": every model against every baseline map (random, gaussian, sobel), same images;
- "variants": every fine-tuned variant against the frozen model, the same method and layer (the
  layer chosen on the frozen model), difference = variant - frozen (delta IoU).
Coverage and the pointing game do not depend on the threshold: when a metric's scores are
identical across thresholds for every map it is compared once, with threshold NaN.
`small_n`: True where the test rests on fewer than `min_n` image pairs (config `stats.min_n`); its
CI and p-values are reported but say little.
"""

from __future__ import annotations

from itertools import combinations
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from .bootstrap import DEFAULT_CONFIDENCE, DEFAULT_MIN_N, DEFAULT_RESAMPLES, bootstrap_mean_ci
from .paired import TEST_COLUMNS, holm, paired_tests
from .scores import MAP_KEYS, ScoreMatrix

BASELINE_MODEL = "baseline"
REFERENCE_VARIANT = "frozen"
LAYER_CHOICES = ("last", "best")
DEFAULT_METHOD_PREFERENCE = ("cls", "mean", "gradcam")

_STATISTICS = ["n_pairs", "n_dropped", "mean_a", "mean_b", "mean_diff", "diff_ci_low", "diff_ci_high",
               "sd_diff", "t", "p_ttest", "wilcoxon_w", "p_wilcoxon", "cohens_dz", "family_size",
               "p_ttest_holm", "p_wilcoxon_holm", "reject_ttest", "reject_wilcoxon", "note", "small_n"]
MODEL_COMPARISON_COLUMNS = ["family", "kind", "variant", "scope", "layer_choice", "metric", "threshold",
                            "model_a", "method_a", "layer_a", "model_b", "method_b", "layer_b",
                            *_STATISTICS]
VARIANT_COMPARISON_COLUMNS = ["family", "model", "scope", "method", "layer_choice", "layer", "metric",
                              "threshold", "variant", "reference", *_STATISTICS]


def threshold_free(matrix: ScoreMatrix, metric: str) -> bool:
    """True when every map's scores of `metric` are the same at every threshold."""
    others = [key for key in MAP_KEYS if key != "threshold"]
    keys = matrix.keys[others]
    same_map = (keys.iloc[1:].to_numpy() == keys.iloc[:-1].to_numpy()).all(axis=1)
    values = matrix.values[metric]
    equal = (values[1:] == values[:-1]) | (np.isnan(values[1:]) & np.isnan(values[:-1]))
    return bool(equal.all(axis=1)[same_map].all())


def head_mean_maps(matrix: ScoreMatrix, metric: str) -> pd.DataFrame:
    """The head-mean maps: MAP_KEYS, `row` (into the matrix) and the map's mean score."""
    maps = matrix.keys.copy()
    maps["row"] = np.arange(len(maps))
    values = matrix.values[metric]
    usable = ~np.isnan(values)
    with np.errstate(invalid="ignore", divide="ignore"):
        maps["mean"] = np.where(usable, values, 0).sum(axis=1) / usable.sum(axis=1)
    maps = maps[maps["head"] == -1]
    if threshold_free(matrix, metric):
        maps = maps.drop_duplicates([k for k in MAP_KEYS if k != "threshold"]).copy()
        maps["threshold"] = np.nan
    return maps.reset_index(drop=True)


def choose_layers(maps: pd.DataFrame, choice: str) -> pd.DataFrame:
    """One map per (model, variant, method, threshold): its last or its best layer."""
    if choice not in LAYER_CHOICES:
        raise ValueError(f"unknown layer choice {choice!r}; known: {', '.join(LAYER_CHOICES)}")
    group = ["model", "variant", "method", "threshold"]
    if choice == "last":
        ordered = maps.sort_values("layer", ascending=False, kind="stable")
    else:  # the highest mean, ties to the shallower layer; maps without a usable score never win
        ordered = maps.dropna(subset=["mean"]).sort_values(["mean", "layer"], ascending=[False, True],
                                                          kind="stable")
    return ordered.drop_duplicates(group).sort_values(group, kind="stable").reset_index(drop=True)


def scope_maps(chosen: pd.DataFrame, scope: str, method_preference: Sequence[str]) -> pd.DataFrame:
    """The chosen maps that stand for each (model, variant) in `scope`."""
    models = chosen[chosen["model"] != BASELINE_MODEL]
    if scope != "primary":
        return models[models["method"] == scope]
    rank = {method: position for position, method in enumerate(method_preference)}
    ranked = models[models["method"].isin(rank)].assign(_rank=lambda f: f["method"].map(rank))
    first = ranked.groupby(["model", "variant"])["_rank"].transform("min")
    return ranked[ranked["_rank"] == first].drop(columns="_rank")


class _Pending:
    """Comparisons collected first and tested together, one batch per metric."""

    def __init__(self):
        self.rows: list[dict] = []
        self.pairs: list[tuple[str, int, int]] = []

    def add(self, identity: dict, metric: str, row_a: int, row_b: int) -> None:
        self.rows.append(identity)
        self.pairs.append((metric, int(row_a), int(row_b)))

    def tested(self, matrix: ScoreMatrix, n_resamples: int, confidence: float, seed: int) -> pd.DataFrame:
        """Identity columns + TEST_COLUMNS + the bootstrap CI of the mean difference."""
        table = pd.DataFrame(self.rows)
        pairs = pd.DataFrame(self.pairs, columns=["metric", "a", "b"])
        tests = pd.DataFrame(index=table.index, columns=[*TEST_COLUMNS, "diff_ci_low", "diff_ci_high"])
        for metric, chosen in pairs.groupby("metric", sort=False):
            values = matrix.values[metric]
            a, b = values[chosen["a"].to_numpy()], values[chosen["b"].to_numpy()]
            considered = matrix.present[chosen["a"].to_numpy()] | matrix.present[chosen["b"].to_numpy()]
            result = paired_tests(a, b, considered)
            intervals = bootstrap_mean_ci(np.where(considered, a - b, np.nan), matrix.image_ids,
                                          n_resamples=n_resamples, confidence=confidence, seed=seed)
            result["diff_ci_low"], result["diff_ci_high"] = intervals.ci_low, intervals.ci_high
            tests.loc[chosen.index] = result.to_numpy()
        return pd.concat([table, tests.infer_objects()], axis=1)


def _same_threshold(frame: pd.DataFrame, threshold) -> pd.DataFrame:
    if pd.isna(threshold):
        return frame[frame["threshold"].isna()]
    return frame[frame["threshold"] == threshold]


def _finish(pending: _Pending, matrix: ScoreMatrix, columns: list[str], alpha: float, n_resamples: int,
            confidence: float, seed: int, min_n: int) -> pd.DataFrame:
    if not pending.rows:
        return pd.DataFrame({column: [] for column in columns})
    table = pending.tested(matrix, n_resamples, confidence, seed)
    for column in ("n_pairs", "n_dropped"):
        table[column] = table[column].astype(np.int64)
    for column in ("p_ttest_holm", "p_wilcoxon_holm"):
        table[column] = np.nan
    table["reject_ttest"] = False
    table["reject_wilcoxon"] = False
    table["family_size"] = table.groupby("family")["family"].transform("size").astype(np.int64)
    table["small_n"] = table["n_pairs"] < min_n
    for _, members in table.groupby("family", sort=False).groups.items():
        for test in ("ttest", "wilcoxon"):
            adjusted, reject = holm(table.loc[members, f"p_{test}"].to_numpy(dtype=np.float64), alpha)
            table.loc[members, f"p_{test}_holm"] = adjusted
            table.loc[members, f"reject_{test}"] = reject
    return table[columns]


def _threshold_key(threshold) -> float:
    return -1.0 if pd.isna(threshold) else float(threshold)


def _family(*parts) -> str:
    return "/".join("any" if isinstance(part, float) and np.isnan(part) else str(part) for part in parts)


def model_comparisons(matrix: ScoreMatrix, metrics: Iterable[str], kinds: Iterable[str] = ("models", "baselines"),
                      layer_choices: Iterable[str] = LAYER_CHOICES, scopes: Iterable[str] = ("primary",),
                      method_preference: Sequence[str] = DEFAULT_METHOD_PREFERENCE, alpha: float = 0.05,
                      n_resamples: int = DEFAULT_RESAMPLES, confidence: float = DEFAULT_CONFIDENCE,
                      seed: int = 0, min_n: int = DEFAULT_MIN_N) -> pd.DataFrame:
    """Model vs model and model vs baseline tests (MODEL_COMPARISON_COLUMNS)."""
    kinds = set(kinds)
    pending = _Pending()

    def add(family, kind, variant, scope, choice, metric, threshold, map_a, map_b):
        pending.add({"family": family, "kind": kind, "variant": variant, "scope": scope,
                     "layer_choice": choice, "metric": metric, "threshold": threshold,
                     "model_a": map_a["model"], "method_a": map_a["method"], "layer_a": int(map_a["layer"]),
                     "model_b": map_b["model"], "method_b": map_b["method"], "layer_b": int(map_b["layer"])},
                    metric, map_a["row"], map_b["row"])

    for metric in metrics:
        maps = head_mean_maps(matrix, metric)
        baselines = maps[maps["model"] == BASELINE_MODEL]
        for choice in layer_choices:
            chosen = choose_layers(maps, choice)
            for scope in scopes:
                in_scope = scope_maps(chosen, scope, method_preference)
                for (variant, threshold), group in in_scope.groupby(["variant", "threshold"], dropna=False):
                    group = group.sort_values("model").to_dict("records")
                    if "models" in kinds:
                        family = _family("models", variant, scope, choice, metric, threshold)
                        for map_a, map_b in combinations(group, 2):
                            add(family, "models", variant, scope, choice, metric, threshold, map_a, map_b)
                    if "baselines" in kinds:
                        family = _family("baselines", variant, scope, choice, metric, threshold)
                        reference = _same_threshold(baselines, threshold).sort_values("method")
                        for map_a in group:
                            for map_b in reference.to_dict("records"):
                                add(family, "baselines", variant, scope, choice, metric, threshold, map_a,
                                    map_b)
    return _finish(pending, matrix, MODEL_COMPARISON_COLUMNS, alpha, n_resamples, confidence, seed, min_n)


def variant_comparisons(matrix: ScoreMatrix, metrics: Iterable[str], layer_choices: Iterable[str] = LAYER_CHOICES,
                        scopes: Iterable[str] = ("primary",),
                        method_preference: Sequence[str] = DEFAULT_METHOD_PREFERENCE, alpha: float = 0.05,
                        n_resamples: int = DEFAULT_RESAMPLES, confidence: float = DEFAULT_CONFIDENCE,
                        seed: int = 0, min_n: int = DEFAULT_MIN_N) -> pd.DataFrame:
    """Each fine-tuned variant against the frozen model on the same map (VARIANT_COMPARISON_COLUMNS).
    Empty while only frozen variants exist."""
    pending = _Pending()
    for metric in metrics:
        maps = head_mean_maps(matrix, metric)
        models = maps[maps["model"] != BASELINE_MODEL]
        if set(models["variant"]) <= {REFERENCE_VARIANT}:
            continue
        lookup = {(m, v, method, int(layer), _threshold_key(t)): row for m, v, method, layer, t, row
                  in models[["model", "variant", "method", "layer", "threshold", "row"]].itertuples(index=False)}
        tuned_variants = sorted(set(models["variant"]) - {REFERENCE_VARIANT})
        for choice in layer_choices:
            frozen = choose_layers(models[models["variant"] == REFERENCE_VARIANT], choice)
            for scope in scopes:
                for reference in scope_maps(frozen, scope, method_preference).to_dict("records"):
                    family = _family("variants", scope, choice, metric, reference["threshold"])
                    for variant in tuned_variants:
                        key = (reference["model"], variant, reference["method"], int(reference["layer"]),
                               _threshold_key(reference["threshold"]))
                        if key not in lookup:
                            continue
                        pending.add({"family": family, "model": reference["model"], "scope": scope,
                                     "method": reference["method"], "layer_choice": choice,
                                     "layer": int(reference["layer"]), "metric": metric,
                                     "threshold": reference["threshold"], "variant": variant,
                                     "reference": REFERENCE_VARIANT}, metric, lookup[key], reference["row"])
    return _finish(pending, matrix, VARIANT_COMPARISON_COLUMNS, alpha, n_resamples, confidence, seed, min_n)


__all__ = ["BASELINE_MODEL", "LAYER_CHOICES", "MODEL_COMPARISON_COLUMNS", "REFERENCE_VARIANT",
           "TEST_COLUMNS", "VARIANT_COMPARISON_COLUMNS", "choose_layers", "head_mean_maps",
           "model_comparisons", "scope_maps", "threshold_free", "variant_comparisons"]
