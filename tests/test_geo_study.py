"""The street-view study tables composed from the geo library."""

import numpy as np
import pandas as pd
import pytest

from encoderlens.geo.distance import geoscore
from encoderlens.geo.knn import knn_geolocate, split_gallery_queries
from encoderlens.geo.job import knn_study


def test_knn_study_matches_the_library_calls_it_composes():
    rng = np.random.default_rng(0)
    n = 60
    latlon = np.column_stack([rng.uniform(-60, 60, n), rng.uniform(-180, 180, n)])
    # embeddings carry the location, so neighbours are near in space too
    embeddings = np.column_stack([latlon / 90, rng.normal(size=(n, 6)) * 0.1]).astype(np.float32)
    table = pd.DataFrame({"image_id": [f"i{k}" for k in range(n)], "latitude": latlon[:, 0],
                          "longitude": latlon[:, 1], "country": "NA", "region": "", "sub-region": "",
                          "city": ""})
    places = pd.DataFrame({"name": ["Windhoek"], "latitude": [-22.56], "longitude": [17.08],
                           "cc": ["NA"], "admin1": ["Khomas"], "admin2": [""]})
    metrics, predictions = knn_study({"cls": embeddings}, table, places, 0.25, 5, seed=3)
    gallery, queries = split_gallery_queries(n, 0.25, 3)
    for method, k, weighted in (("top1", 1, False), ("weighted_top5", 5, True)):
        want, _, _ = knn_geolocate(embeddings[gallery], latlon[gallery], embeddings[queries], k=k,
                                   weighted=weighted)
        got = predictions[predictions["method"] == method]
        np.testing.assert_allclose(got[["pred_latitude", "pred_longitude"]].to_numpy(), want, atol=1e-9)
        row = metrics[metrics["method"] == method].iloc[0]
        assert row["geoscore"] == pytest.approx(geoscore(got["distance_km"].to_numpy()).mean())
        assert row["country_accuracy"] == 1.0 and row["country_compared"] == len(queries)
        assert row["region_compared"] == 0 and np.isnan(row["region_accuracy"])  # "" never compared


def _tiny_streets(n, seed=0):
    rng = np.random.default_rng(seed)
    latlon = np.column_stack([rng.uniform(-60, 60, n), rng.uniform(-180, 180, n)])
    embeddings = rng.normal(size=(n, 8)).astype(np.float32)
    table = pd.DataFrame({"image_id": [f"i{k}" for k in range(n)], "latitude": latlon[:, 0],
                          "longitude": latlon[:, 1], "country": "NA", "region": "", "sub-region": "",
                          "city": ""})
    places = pd.DataFrame({"name": ["Windhoek"], "latitude": [-22.56], "longitude": [17.08],
                           "cc": ["NA"], "admin1": ["Khomas"], "admin2": [""]})
    return latlon, embeddings, table, places


def test_knn_study_clamps_k_to_the_gallery_with_a_note():
    # issue 21 item 6: 5 images, k = 10 used to fail "k=10: need 1 <= k <= gallery size (4)"
    latlon, embeddings, table, places = _tiny_streets(5)
    metrics, predictions = knn_study({"cls": embeddings}, table, places, 0.2, 10, seed=0)
    assert metrics["method"].tolist() == ["top1", "weighted_top4"]
    assert (metrics["k"] == 4).all() and metrics["computable"].all()
    assert metrics["note"].tolist() == ["geo.knn_k = 10 clamped to 4, the gallery size (5 images, 1 held "
                                        "out as queries)"] * 2
    gallery, queries = split_gallery_queries(5, 0.2, 0)
    # independent check: the similarity-weighted mean of all 4 gallery images' unit vectors
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    weights = np.clip(unit[gallery] @ unit[queries[0]], 0, None)
    lat, lon = np.radians(latlon[gallery, 0]), np.radians(latlon[gallery, 1])
    xyz = weights @ np.column_stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])
    want = [np.degrees(np.arctan2(xyz[2], np.hypot(xyz[0], xyz[1]))), np.degrees(np.arctan2(xyz[1], xyz[0]))]
    got = predictions[predictions["method"] == "weighted_top4"]
    np.testing.assert_allclose(got[["pred_latitude", "pred_longitude"]].to_numpy()[0], want, atol=1e-6)
    nearest = gallery[np.argmax(unit[gallery] @ unit[queries[0]])]
    assert predictions[predictions["method"] == "top1"]["neighbour_id"].tolist() == [f"i{nearest}"]


def test_knn_and_geometry_on_one_image_are_not_computable():
    from encoderlens.geo.job import gallery_study, geometry_study

    _, embeddings, table, places = _tiny_streets(1)
    metrics, predictions = knn_study({"cls": embeddings, "mean": embeddings}, table, places, 0.2, 10, 0)
    assert len(metrics) == 4 and not metrics["computable"].any() and (metrics["n"] == 0).all()
    assert metrics["note"].str.startswith("not computable: 1 image(s)").all()
    assert predictions.empty and "geoscore" in predictions.columns
    summary, bins = geometry_study({"cls": embeddings}, table, 100, 0, [0, 25, 20000])
    assert summary["computable"].tolist() == [False] and bins.empty
    gallery, _ = gallery_study(embeddings, table, 10, [0], 0.2, ["country"])
    assert gallery.empty


def test_geometry_and_gallery_studies_sample_rows_above_the_cap():
    from encoderlens.geo.geometry import anisotropy
    from encoderlens.geo.job import gallery_study, geometry_study

    latlon, embeddings, table, places = _tiny_streets(300)
    full, _ = geometry_study({"cls": embeddings}, table, 500, 0, [0, 25, 20000])
    capped, _ = geometry_study({"cls": embeddings}, table, 500, 0, [0, 25, 20000], max_rows=100)
    assert full["n"].tolist() == [300] and capped["n"].tolist() == [100]
    rows = np.sort(np.random.default_rng(0).choice(300, size=100, replace=False))
    assert capped["effective_rank"].iloc[0] == pytest.approx(anisotropy(embeddings[rows])["effective_rank"])
    assert capped["pearson_r"].iloc[0] == full["pearson_r"].iloc[0]  # the pairs are sampled already
    gallery, groups = gallery_study(embeddings, table, 20, [0], 0.2, ["country"], max_rows=100)
    assert gallery["queries"].tolist() == [20, 20]  # 20% of the 100 sampled rows
    assert groups["n_images"].sum() == 300  # the histogram counts every image
