"""Where street-view geolocation fails, whether it is fair across regions, and how models differ on the
same queries: tables composed from the stored per-query predictions, per-image statistics and
embeddings (no forward passes).

Inputs are the study outputs as tables: kNN predictions (`knn_predictions.parquet`: image_id,
features, method, distance_km, geoscore, pred_country, neighbour_id ...), per-image values of any
other metric (attention statistics, probe correctness) with an `image_id` column, and the manifest
(country, scene attributes).

- `worst_queries`: the lowest-GeoScore queries of one (features, method) with their true and
  predicted place and nearest gallery neighbour.
- `worst_probe_errors`: the probes' highest-confidence wrong answers per (level, features), from the
  held-out predictions (`probe_predictions.parquet`), with the true and predicted class, the error in
  km to the predicted class's centroid and nearest gallery images (`gallery_neighbours`).
- `breakdown`: a metric per group of a column (continent, country, land_cover, climate, road_index
  quartile ...): per-group mean with bootstrap CI and share of the sample, Kruskal-Wallis across
  groups, pairwise Mann-Whitney with Holm (`stats.groups`). Continuous attributes are cut into
  quantile bins (`quantile_bins`), labelled by their value range.
- `model_pairs`: every pair of models on the queries both answered: paired bootstrap of the GeoScore
  difference and McNemar's test of country-level top-1 correctness, each Holm-corrected over the
  pairs (`geo.compare`).
- `cka_pairs`: linear CKA between every pair of models' embeddings, per stored feature/layer, on the
  images both embedded.
"""

from __future__ import annotations

import itertools
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ..captions.geography import continents
from ..stats.bootstrap import DEFAULT_RESAMPLES
from ..stats.groups import group_summary, group_tests
from ..stats.paired import holm
from .compare import linear_cka, mcnemar_test, paired_bootstrap_difference
from .distance import haversine_latlon, latlon_to_unit, unit_to_latlon
from .knn import knn_search

PLACE_COLUMNS = ("country", "region", "sub-region", "city", "latitude", "longitude")
BREAKDOWN_COLUMNS = ["attribute", "metric", "group", "n", "n_dropped", "share", "mean", "ci_low", "ci_high",
                     "below_min_n", "n_groups", "kruskal_h", "p_kruskal"]
PAIR_COLUMNS = ["attribute", "metric", "group_a", "group_b", "n_a", "n_b", "mean_diff", "mannwhitney_u",
                "rank_biserial", "p_value", "p_holm", "reject_holm"]


def _truth(manifest: pd.DataFrame) -> pd.DataFrame:
    places = [c for c in PLACE_COLUMNS if c in manifest.columns]
    return manifest[["image_id", *places]].rename(columns={c: f"true_{c}" for c in places})


def worst_queries(predictions: pd.DataFrame, manifest: pd.DataFrame, n_worst: int) -> pd.DataFrame:
    """The n lowest-GeoScore queries per (features, method), worst first, with the true place
    (kind "knn")."""
    table = predictions.merge(_truth(manifest), on="image_id", how="left", validate="many_to_one")
    table = table.sort_values(["features", "method", "geoscore", "image_id"], kind="stable")
    worst = table.groupby(["features", "method"], sort=False).head(n_worst).copy()
    worst["rank"] = worst.groupby(["features", "method"]).cumcount() + 1
    worst.insert(0, "kind", "knn")
    return worst.reset_index(drop=True)


def label_country(labels) -> np.ndarray:
    """The country of a probe class: the class itself at country level, the last part of OSV-5M's
    hierarchical key below it ("Saint Andrew_BB" -> "BB")."""
    return np.array([str(label).rsplit("_", 1)[-1] for label in labels], dtype=object)


def worst_probe_errors(answers: pd.DataFrame, manifest: pd.DataFrame, labels: pd.DataFrame,
                       n_worst: int) -> pd.DataFrame:
    """The n highest-confidence wrong probe answers per (level, features), most confident first
    (kind "probe", method "probe"), with the true place and the predicted class's country. Its error:
    distance_km from the image to the predicted class's centroid (pred_latitude, pred_longitude: the
    spherical mean of the manifest's images of that class, `labels` holding each manifest row's class
    per level); geoscore stays NaN (a class, not a point, was predicted).

    answers: `probe_predictions.parquet` (image_id, level, features, true_label, pred_label,
    confidence, correct)."""
    wrong = answers[~answers["correct"].astype(bool)]
    wrong = wrong.sort_values(["level", "features", "confidence", "image_id"], ascending=[True, True, False, True],
                              kind="stable")
    worst = wrong.groupby(["level", "features"], sort=False).head(n_worst).copy()
    worst["rank"] = worst.groupby(["level", "features"]).cumcount() + 1
    worst = worst.merge(_truth(manifest), on="image_id", how="left", validate="many_to_one")
    worst["pred_latitude"], worst["pred_longitude"] = np.nan, np.nan
    for level, rows in worst.groupby("level").groups.items():
        if level not in labels.columns:
            continue
        centroids = group_centroids(manifest.assign(**{"class": labels[level].to_numpy()}), "class").set_index("group")
        classes = worst.loc[rows, "pred_label"].astype(str)
        worst.loc[rows, "pred_latitude"] = classes.map(centroids["centroid_latitude"]).to_numpy()
        worst.loc[rows, "pred_longitude"] = classes.map(centroids["centroid_longitude"]).to_numpy()
    if {"true_latitude", "true_longitude"} <= set(worst.columns) and len(worst):
        worst["distance_km"] = haversine_latlon(worst[["pred_latitude", "pred_longitude"]].to_numpy(dtype=float),
                                                worst[["true_latitude", "true_longitude"]].to_numpy(dtype=float))
    else:
        worst["distance_km"] = np.nan
    worst["geoscore"] = np.nan
    worst["pred_country"] = label_country(worst["pred_label"])
    worst.insert(0, "kind", "probe")
    worst["method"] = "probe"
    return worst.reset_index(drop=True)


def shown_failures(failures: pd.DataFrame, features: str | None = None, method: str = "top1",
                   levels: Sequence[str] | None = None, max_rank: int | None = None) -> pd.DataFrame:
    """The failures a reader is shown (summary, dashboard): the kNN rows of (features, method) and the
    probe rows of the same features at `levels` (None: every level), rank <= max_rank (None: all);
    features None, or not listed, falls back to the first listed. Adds `true` and `predicted`: the
    country for a kNN query, the class for a probe error."""
    failures = failures.copy()
    for column, default in (("kind", "knn"), ("level", None), ("true_label", None), ("pred_label", None),
                            ("confidence", np.nan), ("neighbours", ""), ("true_country", None)):
        if column not in failures.columns:
            failures[column] = default
    knn = failures[(failures["kind"] == "knn") & (failures["method"] == method)]
    if len(knn) and features not in set(knn["features"]):
        features = knn["features"].iloc[0]
    knn = knn[knn["features"] == features]
    probe = failures[failures["kind"] == "probe"]
    if levels is not None:
        probe = probe[probe["level"].isin(list(levels))]
    if len(probe):
        probe = probe[probe["features"] == (features if features in set(probe["features"]) else probe["features"].iloc[0])]
    shown = pd.concat([frame for frame in (knn, probe) if len(frame)] or [knn], ignore_index=True)
    if max_rank is not None:
        shown = shown[shown["rank"] <= max_rank]
    is_probe = shown["kind"] == "probe"
    shown["true"] = shown["true_label"].where(is_probe, shown["true_country"])
    shown["predicted"] = shown["pred_label"].where(is_probe, shown["pred_country"])
    return shown.reset_index(drop=True)


def gallery_neighbours(image_ids: Sequence[str], ids: Sequence[str], matrix: np.ndarray,
                       gallery: Sequence[str], k: int = 3) -> list[list[str]]:
    """The k most cosine-similar gallery images of each image (by `matrix`, rows in the order of
    `ids`), the image itself excluded: what a failure is shown beside. Images without an embedding
    get []."""
    position = {image: i for i, image in enumerate(ids)}
    gallery_rows = np.array(sorted(position[g] for g in set(gallery) if g in position), dtype=np.int64)
    wanted = [position.get(str(image)) for image in image_ids]
    present = [i for i, row in enumerate(wanted) if row is not None]
    out: list[list[str]] = [[] for _ in image_ids]
    if not present or len(gallery_rows) == 0:
        return out
    depth = min(k + 1, len(gallery_rows))  # one more: the image may be in the gallery itself
    found, _ = knn_search(np.asarray(matrix, dtype=np.float32)[gallery_rows],
                          np.asarray(matrix, dtype=np.float32)[[wanted[i] for i in present]], k=depth)
    gallery_ids = np.asarray(ids, dtype=object)[gallery_rows]
    for i, row in zip(present, found):
        out[i] = [g for g in gallery_ids[row] if g != str(image_ids[i])][:k]
    return out


def quantile_bins(values, n_bins: int) -> np.ndarray:
    """Labels of quantile bins ("[lo, hi]" with 3 significant digits); NaN stays NaN. Ties at a
    boundary go to one bin, so fewer bins can result on data with few distinct values."""
    values = pd.Series(np.asarray(values, dtype=np.float64))
    finite = values.dropna()
    if finite.empty:
        return np.full(len(values), np.nan, dtype=object)
    edges = np.unique(np.quantile(finite, np.linspace(0, 1, n_bins + 1)))
    if len(edges) < 2:
        return np.where(values.notna(), f"[{edges[0]:.3g}, {edges[0]:.3g}]", np.nan).astype(object)
    codes = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2)
    labels = np.array([f"[{edges[i]:.3g}, {edges[i + 1]:.3g}]" for i in range(len(edges) - 1)], dtype=object)
    return np.where(values.notna(), labels[codes], np.nan).astype(object)


def grouping(manifest: pd.DataFrame, column: str, n_bins: int = 4) -> np.ndarray:
    """Group labels of each manifest row for a breakdown column: `continent` from the country code,
    numeric columns with many values in quantile bins, anything else as text ("" -> "unknown")."""
    if column == "continent":
        codes = manifest["country"].astype(str)
        return codes.map(continents(codes.unique())).to_numpy(dtype=object)
    values = manifest[column]
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().all() and numeric.nunique() > 2 * n_bins:
        return quantile_bins(numeric, n_bins)
    text = values.astype(str).where(values.astype(str) != "", "unknown")
    return text.to_numpy(dtype=object)


def breakdown(per_image: pd.DataFrame, manifest: pd.DataFrame, metrics: Sequence[str],
              columns: Sequence[str], min_n: int, alpha: float = 0.05, n_bins: int = 4,
              n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per group: attribute, group, metric, n, share, mean, CI, below_min_n, Kruskal-Wallis of the
    attribute; pairwise tests: attribute, metric, group_a, group_b, ... p_holm) for every metric
    column of `per_image` (rows keyed by image_id) and every breakdown column of the manifest."""
    table = per_image.merge(manifest, on="image_id", how="left", validate="many_to_one",
                            suffixes=("", "_manifest"))
    groups_rows, pair_rows = [], []
    for column in columns:
        if column != "continent" and column not in manifest.columns:
            continue
        labels = grouping(table, column, n_bins)
        for metric in metrics:
            values = table[metric].to_numpy(dtype=np.float64)
            summary = group_summary(values, labels, table["image_id"], min_n=min_n,
                                    n_resamples=n_resamples, seed=seed)
            overall, pairs = group_tests(values, labels, min_n=min_n, alpha=alpha)
            groups_rows.append(summary.assign(attribute=column, metric=metric, **overall))
            pair_rows.append(pairs.assign(attribute=column, metric=metric))
    groups = pd.concat(groups_rows, ignore_index=True) if groups_rows else pd.DataFrame()
    pairs = pd.concat(pair_rows, ignore_index=True) if pair_rows else pd.DataFrame()
    # fixed columns, so that a dataset with no scored query still gives well-formed (empty) tables
    return groups.reindex(columns=BREAKDOWN_COLUMNS), pairs.reindex(columns=PAIR_COLUMNS)


def group_centroids(manifest: pd.DataFrame, column: str = "country") -> pd.DataFrame:
    """Per group: the spherical mean of its images' coordinates (where a world figure places it)."""
    unit = latlon_to_unit(manifest[["latitude", "longitude"]].to_numpy(dtype=float))
    frame = pd.DataFrame(unit, columns=["x", "y", "z"]).assign(group=manifest[column].astype(str).to_numpy())
    means = frame.groupby("group")[["x", "y", "z"]].mean()
    latlon = unit_to_latlon(means.to_numpy())
    return pd.DataFrame({"group": means.index, "centroid_latitude": latlon[:, 0],
                         "centroid_longitude": latlon[:, 1]})


def model_pairs(predictions: Mapping[str, pd.DataFrame], alpha: float = 0.05,
                n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> pd.DataFrame:
    """Every pair of models (keys of `predictions`: per-query tables with image_id, geoscore,
    correct) on the same queries: GeoScore difference (paired bootstrap) and top-1 correctness
    (McNemar), Holm over the pairs within each test."""
    rows = []
    for first, second in itertools.combinations(sorted(predictions), 2):
        joined = predictions[first].merge(predictions[second], on="image_id", suffixes=("_a", "_b"))
        ids = joined["image_id"].to_list()
        geo = paired_bootstrap_difference(joined["geoscore_a"], joined["geoscore_b"], ids,
                                          n_resamples=n_resamples, seed=seed)
        rows.append({"model_a": first, "model_b": second, "test": "geoscore_paired_bootstrap",
                     "n_pairs": geo["n_pairs"], "value_a": geo["mean_a"], "value_b": geo["mean_b"],
                     "difference": geo["mean_diff"], "ci_low": geo["ci_low"], "ci_high": geo["ci_high"],
                     "statistic": np.nan, "p_value": geo["p_bootstrap"]})
        correct = mcnemar_test(joined["correct_a"].to_numpy(bool), joined["correct_b"].to_numpy(bool))
        rows.append({"model_a": first, "model_b": second, "test": "country_top1_mcnemar",
                     "n_pairs": correct["n_pairs"], "value_a": correct["accuracy_a"],
                     "value_b": correct["accuracy_b"],
                     "difference": correct["accuracy_a"] - correct["accuracy_b"], "ci_low": np.nan,
                     "ci_high": np.nan, "statistic": correct["statistic"], "p_value": correct["p_value"]})
    table = pd.DataFrame(rows, columns=["model_a", "model_b", "test", "n_pairs", "value_a", "value_b",
                                        "difference", "ci_low", "ci_high", "statistic", "p_value"])
    table["p_holm"] = np.nan
    table["reject_holm"] = False
    for _, index in table.groupby("test").groups.items():
        adjusted, reject = holm(table.loc[index, "p_value"].to_numpy(), alpha=alpha)
        table.loc[index, "p_holm"] = adjusted
        table.loc[index, "reject_holm"] = reject
    return table


def cka_pairs(embeddings: Mapping[str, tuple[Sequence[str], Mapping[str, np.ndarray]]]) -> pd.DataFrame:
    """Linear CKA for every pair of models and every pair of their stored features/layers, on the
    images both models embedded (joined by id). `embeddings`: model -> (ids, {feature: matrix})."""
    rows = []
    for first, second in itertools.combinations(sorted(embeddings), 2):
        ids_a, features_a = embeddings[first]
        ids_b, features_b = embeddings[second]
        position_b = {image: i for i, image in enumerate(ids_b)}
        common = [(i, position_b[image]) for i, image in enumerate(ids_a) if image in position_b]
        if len(common) < 2:
            continue
        rows_a = np.array([i for i, _ in common])
        rows_b = np.array([j for _, j in common])
        for (name_a, matrix_a), (name_b, matrix_b) in itertools.product(features_a.items(), features_b.items()):
            rows.append({"model_a": first, "model_b": second, "features_a": name_a, "features_b": name_b,
                         "n_images": len(common),
                         "cka": linear_cka(matrix_a[rows_a], matrix_b[rows_b])})
    return pd.DataFrame(rows, columns=["model_a", "model_b", "features_a", "features_b", "n_images", "cka"])


ATTENTION_METRICS = ("entropy", "top10_mass", "n_above_mean", "gini")


def probe_correctness(answers: pd.DataFrame | None, features: str) -> dict[str, pd.DataFrame]:
    """Per probed level: metric name probe_top1_<level> -> (image_id, that metric as 0/1) over the
    level's held-out images, for the probe on `features` (else the first features probed)."""
    if answers is None or answers.empty:
        return {}
    chosen = features if features in set(answers["features"]) else answers["features"].iloc[0]
    out = {}
    for level, rows in answers[answers["features"] == chosen].groupby("level", sort=False):
        metric = f"probe_top1_{level}"
        out[metric] = pd.DataFrame({"image_id": rows["image_id"].astype(str).to_numpy(),
                                    metric: rows["correct"].to_numpy(dtype=float)})
    return out


def per_query(predictions: pd.DataFrame, manifest: pd.DataFrame, features: str, method: str) -> pd.DataFrame:
    """One entity's kNN answers for one (features, method): image_id, geoscore, distance_km and
    `correct` (the predicted place's country is the true country)."""
    chosen = predictions[(predictions["features"] == features) & (predictions["method"] == method)]
    truth = manifest.set_index("image_id")["country"].astype(str)
    correct = chosen["pred_country"].astype(str).to_numpy() == truth.reindex(chosen["image_id"]).to_numpy()
    return pd.DataFrame({"image_id": chosen["image_id"].to_numpy(), "geoscore": chosen["geoscore"].to_numpy(),
                         "distance_km": chosen["distance_km"].to_numpy(), "correct": correct})


def last_layer_attention(stats: pd.DataFrame) -> pd.DataFrame:
    """Per-image attention statistics of the deepest stored layer (image_id + ATTENTION_METRICS)."""
    deepest = stats[stats["layer"] == stats["layer"].max()]
    return deepest[["image_id", *ATTENTION_METRICS]].reset_index(drop=True)


def depth_study(manifest: pd.DataFrame, entities: Mapping[str, dict], settings: Mapping) -> dict[str, pd.DataFrame]:
    """Every table of the study for one dataset. `entities`: "model" or "model/variant" -> {
    "predictions": knn_predictions table, "attention": attention_stats table or None,
    "embeddings": (ids, {feature: matrix})}. `settings`: features, method, n_worst, attributes,
    regions, min_images, bins, alpha, n_resamples, seed.

    An entity may also hold "probe_predictions" (the held-out probe answers), "labels" (each manifest
    row's probe class per level, `data.osv5m.level_keys`) and "retrieval" ((ids, matrix) of the kNN
    features): its highest-confidence probe errors then join the failures, and probe accuracy per
    level (metric probe_top1_<level>, on the kNN features' probe, over that level's held-out images)
    joins the regional and attribute breakdowns; with "retrieval", every failure lists its
    `n_neighbours` nearest gallery images (`neighbours`, space-separated)."""
    manifest = manifest.assign(image_id=manifest["image_id"].astype(str))
    common = dict(min_n=settings["min_images"], alpha=settings["alpha"], n_bins=settings["bins"],
                  n_resamples=settings["n_resamples"], seed=settings["seed"])
    failures, attributes, attribute_tests, regional, regional_tests, answers = [], [], [], [], [], {}
    for entity, tables in entities.items():
        model, _, variant = entity.partition("/")
        label = {"model": model, "variant": variant or "frozen"}
        predictions = tables["predictions"]
        worst = [worst_queries(predictions, manifest, settings["n_worst"])]
        probe_answers = tables.get("probe_predictions")
        if probe_answers is not None:
            probe_answers = probe_answers.assign(image_id=probe_answers["image_id"].astype(str))
            worst.append(worst_probe_errors(probe_answers, manifest, tables["labels"], settings["n_worst"]))
        worst = pd.concat([w for w in worst if len(w)] or worst[:1], ignore_index=True)
        if tables.get("retrieval") is not None:
            ids, matrix = tables["retrieval"]
            gallery = sorted(set(map(str, ids)) - set(predictions["image_id"].astype(str)))
            found = gallery_neighbours(worst["image_id"].astype(str).tolist(), [str(i) for i in ids], matrix,
                                       gallery, k=settings.get("n_neighbours", 3))
            worst["neighbours"] = [" ".join(row) for row in found]
        failures.append(worst.assign(**label))
        answers[entity] = per_query(predictions, manifest, settings["features"], settings["method"])
        per_image = answers[entity].assign(correct=answers[entity]["correct"].astype(float))
        metrics = ["geoscore", "distance_km", "correct"]
        if tables.get("attention") is not None:
            per_image = per_image.merge(last_layer_attention(tables["attention"]), on="image_id", how="left")
            metrics += list(ATTENTION_METRICS)
        groups, pairs = breakdown(per_image, manifest, ["geoscore", "correct"], settings["attributes"], **common)
        attributes.append(groups.assign(**label))
        attribute_tests.append(pairs.assign(**label))
        groups, pairs = breakdown(per_image, manifest, metrics, settings["regions"], **common)
        regional.append(groups.assign(**label))
        regional_tests.append(pairs.assign(**label))
        for metric, correct in probe_correctness(probe_answers, settings["features"]).items():
            for columns, into, tests in ((settings["attributes"], attributes, attribute_tests),
                                         (settings["regions"], regional, regional_tests)):
                groups, pairs = breakdown(correct, manifest, [metric], columns, **common)
                into.append(groups.assign(**label))
                tests.append(pairs.assign(**label))
    regional_table = pd.concat(regional, ignore_index=True)
    centroids = group_centroids(manifest).set_index("group")
    is_country = regional_table["attribute"] == "country"
    for column in ("centroid_latitude", "centroid_longitude"):
        regional_table[column] = regional_table["group"].astype(str).map(centroids[column]).where(is_country)
    return {
        "failures": pd.concat(failures, ignore_index=True),
        "failure_attributes": pd.concat(attributes, ignore_index=True),
        "failure_attribute_tests": pd.concat(attribute_tests, ignore_index=True),
        "regional": regional_table,
        "regional_tests": pd.concat(regional_tests, ignore_index=True),
        "model_comparisons": model_pairs(answers, alpha=settings["alpha"], n_resamples=settings["n_resamples"],
                                         seed=settings["seed"]),
        "cka": cka_pairs({entity: tables["embeddings"] for entity, tables in entities.items()}),
    }
