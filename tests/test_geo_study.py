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
