"""Failure cases, regional breakdowns and model comparisons over stored per-query tables."""

import numpy as np
import pandas as pd
import pytest

from encoderlens.geo.compare import linear_cka
from encoderlens.geo.depth import (breakdown, cka_pairs, group_centroids, model_pairs, quantile_bins,
                                   worst_queries)


def _manifest(n=240, seed=0):
    rng = np.random.default_rng(seed)
    countries = rng.choice(["FR", "DE", "NA", "ZA", "JP"], n)
    return pd.DataFrame({
        "image_id": [f"i{k}" for k in range(n)], "country": countries,
        "city": [f"c{k % 7}" for k in range(n)],
        "latitude": rng.uniform(-60, 60, n), "longitude": rng.uniform(-170, 170, n),
        "land_cover": rng.choice([1, 2, 3], n), "road_index": rng.gamma(2, 1, n)})


def test_worst_queries_are_the_lowest_scores_with_their_true_place():
    manifest = _manifest()
    rng = np.random.default_rng(1)
    predictions = pd.concat([pd.DataFrame({"image_id": manifest["image_id"], "features": f, "method": "top1",
                                           "geoscore": rng.uniform(0, 5000, len(manifest))})
                             for f in ("cls", "mean")], ignore_index=True)
    worst = worst_queries(predictions, manifest, n_worst=5)
    assert len(worst) == 10
    for features, block in worst.groupby("features"):
        expected = predictions[predictions["features"] == features].nsmallest(5, "geoscore")
        assert block["image_id"].tolist() == expected["image_id"].tolist()
        assert block["rank"].tolist() == [1, 2, 3, 4, 5]
    row = worst.iloc[0]
    assert row["true_country"] == manifest.set_index("image_id").loc[row["image_id"], "country"]


def test_quantile_bins_split_into_ordered_ranges():
    values = np.arange(100.0)
    values[0] = np.nan
    labels = quantile_bins(values, 4)
    assert pd.isna(labels[0])
    assert pd.Series(labels[1:]).value_counts().sort_index().tolist() == [25, 24, 25, 25]  # 1-25, 26-49, 50-74, 75-99
    assert labels[1] == "[1, 25.5]"


def test_breakdown_finds_the_planted_hard_attribute_and_continent():
    manifest = _manifest(n=400)
    rng = np.random.default_rng(2)
    hard = manifest["land_cover"].to_numpy() == 3
    african = manifest["country"].isin(["NA", "ZA"]).to_numpy()
    per_image = pd.DataFrame({"image_id": manifest["image_id"],
                              "geoscore": np.where(hard, 800, 3000) + rng.normal(0, 300, len(manifest)),
                              "top10_mass": np.where(african, 0.5, 0.3) + rng.normal(0, 0.05, len(manifest))})
    groups, pairs = breakdown(per_image, manifest, ["geoscore", "top10_mass"],
                              ["land_cover", "continent", "road_index"], min_n=5, n_resamples=500)
    cover = groups[(groups["attribute"] == "land_cover") & (groups["metric"] == "geoscore")].set_index("group")
    assert cover.loc["3", "ci_high"] < min(cover.loc["1", "ci_low"], cover.loc["2", "ci_low"])
    assert cover["p_kruskal"].iloc[0] < 1e-10
    assert cover["share"].sum() == pytest.approx(1.0)
    continent = groups[(groups["attribute"] == "continent") & (groups["metric"] == "top10_mass")]
    assert set(continent["group"]) == {"Africa", "Europe", "Asia"}  # NA is Namibia, not missing
    africa = continent.set_index("group").loc["Africa"]
    assert africa["n"] == int(african.sum())
    tests = pairs[(pairs["attribute"] == "land_cover") & (pairs["metric"] == "geoscore")]
    rejected = {(a, b) for a, b, r in zip(tests["group_a"], tests["group_b"], tests["reject_holm"]) if r}
    assert rejected == {("1", "3"), ("2", "3")}
    roads = groups[(groups["attribute"] == "road_index") & (groups["metric"] == "geoscore")]
    assert len(roads) == 4 and roads["n"].sum() == 400


def test_group_centroids_are_spherical_means():
    manifest = pd.DataFrame({"country": ["FJ", "FJ", "FR"], "latitude": [-17.0, -17.0, 46.0],
                             "longitude": [179.0, -179.0, 2.0]})
    centroids = group_centroids(manifest).set_index("group")
    assert centroids.loc["FJ", "centroid_latitude"] == pytest.approx(-17.0, abs=0.01)  # great-circle midpoint
    assert abs(centroids.loc["FJ", "centroid_longitude"]) == pytest.approx(180.0, abs=1e-6)  # not 0
    assert centroids.loc["FR", "centroid_longitude"] == pytest.approx(2.0)


def test_model_pairs_detect_the_better_model_on_shared_queries():
    rng = np.random.default_rng(3)
    ids = [f"q{i}" for i in range(300)]
    good = pd.DataFrame({"image_id": ids, "geoscore": rng.uniform(2000, 5000, 300),
                         "correct": rng.random(300) < 0.8})
    bad = pd.DataFrame({"image_id": ids, "geoscore": rng.uniform(0, 3000, 300),
                        "correct": rng.random(300) < 0.4})
    same = good.assign(geoscore=good["geoscore"] + rng.normal(0, 1, 300))
    table = model_pairs({"good": good, "bad": bad.iloc[::-1], "same": same}, n_resamples=1000)
    assert len(table) == 6
    row = table[(table["model_a"] == "bad") & (table["model_b"] == "good")].set_index("test")
    assert row.loc["geoscore_paired_bootstrap", "difference"] < -1000
    assert row.loc["geoscore_paired_bootstrap", "reject_holm"]
    assert row.loc["country_top1_mcnemar", "reject_holm"]
    assert row.loc["country_top1_mcnemar", "n_pairs"] == 300
    twin = table[(table["model_a"] == "good") & (table["model_b"] == "same")].set_index("test")
    assert not twin.loc["country_top1_mcnemar", "reject_holm"]
    assert twin.loc["country_top1_mcnemar", "p_value"] == 1.0


def test_cka_pairs_join_on_ids():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(50, 8))
    ids = [f"i{k}" for k in range(50)]
    rotated = x @ np.linalg.qr(rng.normal(size=(8, 8)))[0]
    table = cka_pairs({"a": (ids, {"cls": x}), "b": (ids[::-1], {"cls": rotated[::-1], "mean": rng.normal(size=(50, 4))})})
    assert len(table) == 2
    cls = table.set_index("features_b").loc["cls"]
    assert cls["cka"] == pytest.approx(1.0) and cls["n_images"] == 50
    assert 0 <= table.set_index("features_b").loc["mean", "cka"] < 0.5


def test_depth_study_on_a_dataset_with_no_scored_query():
    """One image: kNN has nothing to split, so its predictions are empty; every table is still written."""
    from encoderlens.geo.depth import depth_study

    manifest = _manifest(n=1)
    predictions = pd.DataFrame({c: [] for c in ("image_id", "features", "method", "geoscore", "distance_km",
                                                 "pred_country", "neighbour_id")})
    settings = dict(features="cls", method="top1", n_worst=5, attributes=["land_cover", "road_index"],
                    regions=["continent", "country"], min_images=2, bins=4, alpha=0.05, n_resamples=100, seed=0)
    tables = depth_study(manifest, {"m": {"predictions": predictions, "attention": None,
                                          "embeddings": (["i0"], {"cls": np.ones((1, 4))})}}, settings)
    assert all(table.empty for table in tables.values())
    assert {"group", "centroid_latitude", "model"} <= set(tables["regional"].columns)


def _probe_answers(manifest, seed=5):
    """Held-out answers of a country probe and a region probe (keys "<city>_<country>")."""
    rng = np.random.default_rng(seed)
    test = manifest.sample(frac=0.5, random_state=seed)
    rows = []
    for level, truth in (("country", test["country"]), ("region", test["city"] + "_" + test["country"])):
        classes = np.unique(truth)
        wrong = rng.random(len(test)) < 0.4
        predicted = np.where(wrong, rng.choice(classes, len(test)), truth)
        rows.append(pd.DataFrame({"image_id": test["image_id"].to_numpy(), "level": level, "features": "cls",
                                  "true_label": truth.to_numpy(), "pred_label": predicted,
                                  "confidence": rng.uniform(0.2, 1.0, len(test)),
                                  "correct": predicted == truth.to_numpy()}))
    return pd.concat(rows, ignore_index=True)


def test_worst_probe_errors_are_the_most_confident_wrong_answers():
    from encoderlens.geo.depth import worst_probe_errors
    from encoderlens.geo.distance import haversine_latlon

    manifest = _manifest()
    answers = _probe_answers(manifest)
    labels = pd.DataFrame({"country": manifest["country"], "region": manifest["city"] + "_" + manifest["country"]})
    worst = worst_probe_errors(answers, manifest, labels, n_worst=4)
    assert set(worst["kind"]) == {"probe"} and len(worst) == 8
    for level, block in worst.groupby("level"):
        wrong = answers[(answers["level"] == level) & ~answers["correct"]]
        assert block["image_id"].tolist() == wrong.nlargest(4, "confidence")["image_id"].tolist()
        assert block["rank"].tolist() == [1, 2, 3, 4] and not (block["pred_label"] == block["true_label"]).any()
    row = worst[worst["level"] == "region"].iloc[0]
    assert row["pred_country"] == row["pred_label"].rsplit("_", 1)[1]
    members = manifest[labels["region"] == row["pred_label"]]
    # the predicted class's centroid: the spherical mean of its images, and the error to it in km
    centroid = group_centroids(members.assign(c="x"), "c").iloc[0]
    assert (row["pred_latitude"], row["pred_longitude"]) == pytest.approx(
        (centroid["centroid_latitude"], centroid["centroid_longitude"]))
    truth = manifest.set_index("image_id").loc[row["image_id"]]
    expected = haversine_latlon(np.array([[row["pred_latitude"], row["pred_longitude"]]]),
                                np.array([[truth["latitude"], truth["longitude"]]]))[0]
    assert row["distance_km"] == pytest.approx(expected) and np.isnan(row["geoscore"])


def test_gallery_neighbours_by_cosine_without_the_image_itself():
    from encoderlens.geo.depth import gallery_neighbours

    rng = np.random.default_rng(7)
    matrix = rng.normal(size=(30, 6))
    ids = [f"i{k}" for k in range(30)]
    gallery = ids[10:]
    found = gallery_neighbours(["i0", "i15", "nowhere"], ids, matrix, gallery, k=3)
    unit = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    for image, got in zip(["i0", "i15"], found):
        cosine = unit[10:] @ unit[ids.index(image)]
        order = [gallery[j] for j in np.argsort(-cosine) if gallery[j] != image]
        assert got == order[:3]
    assert found[2] == []


def test_probe_accuracy_per_region_joins_the_breakdowns():
    from encoderlens.geo.depth import depth_study

    manifest = _manifest(n=200)
    answers = _probe_answers(manifest)
    queries = manifest.iloc[:60]
    rng = np.random.default_rng(8)
    predictions = pd.DataFrame({"image_id": queries["image_id"], "features": "cls", "method": "top1",
                                "geoscore": rng.uniform(0, 5000, 60), "distance_km": rng.uniform(0, 9000, 60),
                                "pred_country": queries["country"].to_numpy(), "neighbour_id": "i100"})
    labels = pd.DataFrame({"country": manifest["country"], "region": manifest["city"] + "_" + manifest["country"]})
    ids = manifest["image_id"].tolist()
    settings = dict(features="cls", method="top1", n_worst=3, attributes=["land_cover"], regions=["continent", "country"],
                    min_images=2, bins=4, alpha=0.05, n_resamples=200, seed=0, n_neighbours=2)
    tables = depth_study(manifest, {"m": {"predictions": predictions, "attention": None, "probe_predictions": answers,
                                          "labels": labels, "retrieval": (ids, rng.normal(size=(200, 5))),
                                          "embeddings": (ids, {"cls": rng.normal(size=(200, 4))})}}, settings)
    failures = tables["failures"]
    assert failures.groupby("kind").size().to_dict() == {"knn": 3, "probe": 6}
    # neighbours come from the gallery (the images that are no kNN query), never the image itself
    gallery = set(ids) - set(queries["image_id"])
    for image, listed in zip(failures["image_id"], failures["neighbours"]):
        assert len(listed.split()) == 2 and set(listed.split()) <= gallery - {image}
    regional = tables["regional"]
    for level in ("country", "region"):
        own = answers[(answers["level"] == level)]
        rows = regional[(regional["metric"] == f"probe_top1_{level}") & (regional["attribute"] == "continent")]
        assert rows["n"].sum() == len(own) and rows["share"].sum() == pytest.approx(1.0)
        assert (rows["mean"] * rows["n"]).sum() / rows["n"].sum() == pytest.approx(own["correct"].mean())
        assert rows["ci_low"].le(rows["mean"]).all() and rows["p_kruskal"].notna().all()
    france = answers[(answers["level"] == "country") & answers["image_id"].isin(
        manifest.loc[manifest["country"] == "FR", "image_id"])]
    row = regional[(regional["metric"] == "probe_top1_country") & (regional["group"] == "FR")].iloc[0]
    assert row["mean"] == pytest.approx(france["correct"].mean()) and row["n"] == len(france)
    assert "probe_top1_country" in set(tables["failure_attributes"]["metric"])
