"""Geolocation by retrieval: haversine and GeoScore, kNN geolocation, nearest places and admin-level
accuracy, embedding geometry. Expected values are written out (known city distances, the GeoScore
formula) or come from independent computations (numpy brute force, the spherical law of cosines)."""

import io
import math

import numpy as np
import pandas as pd
import pytest
from scipy.spatial import cKDTree

from encoderlens.geo import (DEFAULT_DISTANCE_BINS_KM, EARTH_RADIUS_KM, MAX_DISTANCE_KM, PlaceIndex,
                             admin_accuracy, anisotropy, binned_cosine, build_index, cosine_vs_distance,
                             covariance_spectrum, effective_rank, geolocation_metrics, geoscore,
                             haversine_km, haversine_latlon, knn_geolocate, knn_search, l2_normalise,
                             latlon_to_unit, mean_pairwise_cosine, nearest_places, participation_ratio,
                             predicted_places, sample_pairs, split_gallery_queries, unit_to_latlon,
                             weighted_location)
from encoderlens.geo.geometry import _pair_from_linear

PARIS, LONDON = (48.8566, 2.3522), (51.5074, -0.1278)
NEW_YORK, LOS_ANGELES = (40.7128, -74.0060), (34.0522, -118.2437)
ONE_DEGREE_KM = math.pi * EARTH_RADIUS_KM / 180  # 111.19 km of great circle


def random_latlon(n, seed):
    """Points uniform on the sphere, in degrees."""
    xyz = np.random.default_rng(seed).normal(size=(n, 3))
    return unit_to_latlon(xyz)


# ---- haversine, GeoScore, distance metrics ---------------------------------------------------------
def test_haversine_known_city_pairs():
    assert haversine_km(*PARIS, *LONDON) == pytest.approx(343.5, abs=0.2)
    assert haversine_km(*NEW_YORK, *LOS_ANGELES) == pytest.approx(3936, abs=1)
    # Suva (Fiji) to Apia (Samoa) crosses the antimeridian: about 1,150 km, not 38,900 the other way round
    assert haversine_km(-18.1416, 178.4419, -13.8333, -171.7667) == pytest.approx(1151, abs=3)


def test_haversine_across_the_antimeridian_and_at_antipodes():
    assert haversine_km(0, 179.5, 0, -179.5) == pytest.approx(ONE_DEGREE_KM, rel=1e-12)
    assert haversine_km(0, 180, 0, -180) == pytest.approx(0, abs=1e-9)
    assert haversine_km(10, 190, 10, -170) == pytest.approx(0, abs=1e-9)
    for a, b in [((0, 0), (0, 180)), ((45, 30), (-45, -150)), ((90, 0), (-90, 0)), ((-33.9, 18.4), (33.9, -161.6))]:
        assert haversine_km(*a, *b) == pytest.approx(math.pi * 6371, rel=1e-12)
    assert MAX_DISTANCE_KM == pytest.approx(20015.0868, abs=1e-3)


def test_haversine_matches_an_independent_formula_and_broadcasts():
    a, b = random_latlon(1000, 1), random_latlon(1000, 2)
    # spherical law of cosines via unit vectors: fine away from 0 and pi
    cos_angle = np.clip((latlon_to_unit(a) * latlon_to_unit(b)).sum(1), -1, 1)
    expected = 6371 * np.arccos(cos_angle)
    assert np.allclose(haversine_latlon(a, b), expected, rtol=1e-7, atol=1e-6)
    # broadcasting: one point against many, shape kept
    distances = haversine_km(PARIS[0], PARIS[1], b[:, 0], b[:, 1])
    assert distances.shape == (1000,)
    assert np.allclose(haversine_km(b[:, 0], b[:, 1], PARIS[0], PARIS[1]), distances)
    assert haversine_km(np.zeros((2, 3)), 0, 0, 1).shape == (2, 3)


def test_geoscore_formula():
    assert geoscore(0) == 5000
    assert geoscore(1492.7) == pytest.approx(5000 / math.e, rel=1e-12)
    assert geoscore(2 * 1492.7) == pytest.approx(5000 / math.e**2, rel=1e-12)
    assert np.allclose(geoscore([0, 1492.7, 20015.0868]), [5000, 1839.397205857, 0.0075105], rtol=1e-4)


def test_geolocation_metrics_at_known_distances():
    true = np.zeros((6, 2))
    offsets = np.array([0.005, 0.1, 1.0, 5.0, 20.0, 90.0])  # degrees of longitude along the equator
    pred = np.stack([np.zeros(6), offsets], axis=1)
    km = offsets * ONE_DEGREE_KM  # 0.56, 11.1, 111, 556, 2224, 10008 km
    metrics = geolocation_metrics(pred, true)
    assert metrics["n"] == 6
    assert metrics["mean_km"] == pytest.approx(km.mean(), rel=1e-9)
    assert metrics["median_km"] == pytest.approx((km[2] + km[3]) / 2, rel=1e-9)
    assert metrics["geoscore"] == pytest.approx(np.mean(5000 * np.exp(-km / 1492.7)), rel=1e-9)
    assert [metrics[f"acc_{r}km"] for r in (1, 25, 200, 750, 2500)] == pytest.approx([1/6, 2/6, 3/6, 4/6, 5/6])
    # perfect predictions
    perfect = geolocation_metrics(true, true)
    assert perfect["mean_km"] == 0 and perfect["geoscore"] == 5000 and perfect["acc_1km"] == 1


def test_accuracy_radius_is_strict_as_in_osv5m():
    pred, true = np.array([[0.0, 1.0]]), np.array([[0.0, 0.0]])
    distance = float(haversine_latlon(pred, true)[0])
    assert geolocation_metrics(pred, true, radii_km=(distance,))[f"acc_{distance}km"] == 0
    assert geolocation_metrics(pred, true, radii_km=(distance + 1e-6,))[f"acc_{distance + 1e-6}km"] == 1


def test_metrics_reject_bad_input():
    with pytest.raises(ValueError, match="latitude"):
        geolocation_metrics([[91.0, 0.0]], [[0.0, 0.0]])
    with pytest.raises(ValueError, match="shape"):
        geolocation_metrics(np.zeros((2, 2)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="finite"):
        geolocation_metrics([[np.nan, 0.0]], [[0.0, 0.0]])


def test_unit_vectors_round_trip():
    latlon = random_latlon(500, 3)
    back = unit_to_latlon(latlon_to_unit(latlon))
    assert np.allclose(haversine_latlon(latlon, back), 0, atol=1e-6)
    assert np.allclose(np.linalg.norm(latlon_to_unit(latlon), axis=1), 1)


# ---- kNN geolocation -------------------------------------------------------------------------------
def gallery_and_queries(n_gallery=1000, n_queries=200, dim=32, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n_gallery, dim)), rng.normal(size=(n_queries, dim)),
            random_latlon(n_gallery, seed + 1))


def test_exact_duplicate_is_found_with_similarity_one_and_distance_zero():
    gallery, _, latlon = gallery_and_queries()
    rows = np.array([3, 77, 400, 999])
    queries = gallery[rows] * np.array([[0.5], [2.0], [7.0], [1.0]])  # cosine ignores the scale
    pred, neighbours, similarity = knn_geolocate(gallery, latlon, queries, k=5)
    assert neighbours.shape == similarity.shape == (4, 5)
    assert np.array_equal(neighbours[:, 0], rows)
    assert np.allclose(similarity[:, 0], 1.0, atol=1e-5)
    assert (similarity[:, 1:] < 0.99).all()
    assert np.array_equal(pred, latlon[rows])
    assert geolocation_metrics(pred, latlon[rows])["mean_km"] == 0


def test_faiss_equals_brute_force_cosine():
    gallery, queries, _ = gallery_and_queries()
    cosine = (gallery / np.linalg.norm(gallery, axis=1, keepdims=True)) @ \
        (queries / np.linalg.norm(queries, axis=1, keepdims=True)).T  # (G, Q), float64
    expected = np.argsort(-cosine, axis=0)[:10].T
    neighbours, similarity = knn_search(gallery, queries, k=10)
    assert neighbours.dtype == np.int64
    assert np.array_equal(neighbours[:, 0], cosine.argmax(axis=0))
    assert np.array_equal(neighbours, expected)
    assert np.allclose(similarity, np.take_along_axis(cosine.T, expected, axis=1), atol=1e-5)
    assert (np.diff(similarity, axis=1) <= 0).all()  # best first
    # top-1 search agrees with the first column of top-10, and the thread setting changes nothing
    top1, _ = knn_search(gallery, queries, k=1, threads=1)
    assert np.array_equal(top1[:, 0], neighbours[:, 0])
    # an index built once from raw embeddings is a cosine index too
    import faiss

    index = build_index(gallery * np.random.default_rng(5).uniform(0.1, 10, size=(len(gallery), 1)))
    assert index.metric_type == faiss.METRIC_INNER_PRODUCT and index.ntotal == len(gallery)
    similarity_again, neighbours_again = index.search(l2_normalise(queries), 10)
    assert np.array_equal(neighbours_again, expected)
    assert np.allclose(similarity_again, similarity, atol=1e-5)


def test_top1_prediction_is_the_nearest_neighbours_location():
    gallery, queries, latlon = gallery_and_queries()
    pred, neighbours, _ = knn_geolocate(gallery, latlon, queries, k=3)
    assert np.array_equal(pred, latlon[neighbours[:, 0]])
    # weighted with k=1 is top-1
    pred1, _, _ = knn_geolocate(gallery, latlon, queries, k=1, weighted=True)
    assert np.array_equal(pred1, pred)


def test_weighted_prediction_across_the_antimeridian_lands_near_180():
    rng = np.random.default_rng(0)
    dim = 16
    basis = np.eye(dim)
    # four gallery images near the query's direction, located either side of the antimeridian
    near = basis[0] + 0.05 * rng.normal(size=(4, dim))
    far = basis[1:6] + 0.05 * rng.normal(size=(5, dim))
    gallery = np.vstack([near, far])
    latlon = np.array([[0, 179.0], [0, -179.0], [1, 179.5], [-1, -179.5],
                       [0, 0], [10, 10], [-10, -10], [45, 90], [-45, -90]])
    pred, neighbours, similarity = knn_geolocate(gallery, latlon, basis[:1], k=4, weighted=True)
    assert set(neighbours[0]) == {0, 1, 2, 3}
    assert abs(pred[0, 1]) > 179 and abs(pred[0, 0]) < 1
    assert haversine_km(pred[0, 0], pred[0, 1], 0, 180) < 100
    # averaging degrees would have put it in the Gulf of Guinea
    naive = np.average(latlon[neighbours[0]], axis=0, weights=similarity[0])
    assert haversine_km(naive[0], naive[1], 0, 180) > 19000


def test_weighted_location_is_the_similarity_weighted_spherical_mean():
    neighbours = np.array([[[0.0, 10.0], [0.0, 20.0]], [[0.0, 10.0], [0.0, 20.0]], [[10.0, 0.0], [50.0, 0.0]]])
    similarity = np.array([[0.5, 0.5], [0.9, 0.3], [0.8, -0.4]])
    pred = weighted_location(neighbours, similarity)
    assert pred[0] == pytest.approx([0, 15], abs=1e-9)  # equal weights: the great-circle midpoint
    # weights 3:1 along the equator: the mean of the unit vectors points at atan2 of its components
    x = 0.9 * np.cos(np.radians(10)) + 0.3 * np.cos(np.radians(20))
    y = 0.9 * np.sin(np.radians(10)) + 0.3 * np.sin(np.radians(20))
    assert pred[1] == pytest.approx([0, np.degrees(np.arctan2(y, x))], abs=1e-9)
    assert pred[2] == pytest.approx([10, 0], abs=1e-9)  # a negative similarity carries no weight


def test_weighted_location_falls_back_to_top1():
    neighbours = np.array([[[10.0, 20.0], [-10.0, -160.0]], [[5.0, 5.0], [6.0, 6.0]]])
    similarity = np.array([[0.7, 0.7], [-0.1, -0.2]])  # antipodes cancel; all weights zero
    assert np.array_equal(weighted_location(neighbours, similarity), [[10.0, 20.0], [5.0, 5.0]])


def test_knn_rejects_bad_input():
    gallery, queries, latlon = gallery_and_queries(n_gallery=5)
    with pytest.raises(ValueError, match="k="):
        knn_search(gallery, queries, k=6)
    with pytest.raises(ValueError, match="dimensions"):
        knn_search(gallery, queries[:, :8])
    with pytest.raises(ValueError, match="all zeros"):
        l2_normalise(np.vstack([gallery, np.zeros(32)]))
    with pytest.raises(ValueError, match="locations"):
        knn_geolocate(gallery, latlon[:4], queries)


def test_l2_normalise():
    x = l2_normalise(np.array([[3.0, 4.0], [0.0, -2.0]]))
    assert x.dtype == np.float32 and x.flags["C_CONTIGUOUS"]
    assert np.allclose(x, [[0.6, 0.8], [0, -1]])
    # squared norms that under- or overflow float32 are still normalised
    extreme = l2_normalise(np.array([[1e-30, 0.0], [1e25, 1e25]], dtype=np.float32))
    assert np.allclose(extreme, [[1, 0], [2**-0.5, 2**-0.5]])
    with pytest.raises(ValueError, match="row 1 has a non-finite"):
        l2_normalise([[1.0, 0.0], [np.nan, 1.0]])


def test_split_gallery_queries():
    gallery, queries = split_gallery_queries(1000, 0.2, seed=7)
    assert len(queries) == 200 and len(gallery) == 800
    assert np.array_equal(np.sort(np.concatenate([gallery, queries])), np.arange(1000))
    assert (np.diff(gallery) > 0).all() and (np.diff(queries) > 0).all()
    again = split_gallery_queries(1000, 0.2, seed=7)
    assert np.array_equal(again[1], queries)
    assert not np.array_equal(split_gallery_queries(1000, 0.2, seed=8)[1], queries)
    assert [len(part) for part in split_gallery_queries(3, 0.01, seed=0)] == [2, 1]
    assert [len(part) for part in split_gallery_queries(3, 0.99, seed=0)] == [1, 2]
    with pytest.raises(ValueError):
        split_gallery_queries(10, 1.0, seed=0)


# ---- nearest places and admin accuracy -------------------------------------------------------------
def test_nearest_place_is_great_circle_nearest_where_a_degree_kdtree_is_wrong():
    places = pd.DataFrame({"name": ["A", "B", "C", "D"], "latitude": [80.0, 78.0, 0.0, 0.0],
                           "longitude": [10.0, 0.0, -179.9, 179.0]})
    queries = np.array([[80.0, 0.0], [0.0, 179.9]])
    # at 80N, A is 10 degrees of longitude (193 km) away, B 2 degrees of latitude (222 km);
    # at the antimeridian C is 22 km away but 359.8 "degrees" in a naive tree, D 100 km
    assert haversine_km(80, 0, 80, 10) < haversine_km(80, 0, 78, 0)
    naive = cKDTree(places[["latitude", "longitude"]].to_numpy()).query(queries)[1]
    assert list(naive) == [1, 3]
    index, distance = nearest_places(queries, places, return_distance=True)
    assert list(index) == [0, 2]
    assert distance == pytest.approx([haversine_km(80, 0, 80, 10), haversine_km(0, 179.9, 0, -179.9)], rel=1e-9)


def test_nearest_places_matches_brute_force_haversine():
    places = pd.DataFrame(random_latlon(3000, 11), columns=["latitude", "longitude"])
    queries = random_latlon(400, 12)
    queries[:100, 0] = np.random.default_rng(0).uniform(75, 90, 100)  # crowd some near the pole
    distances = haversine_km(queries[:, None, 0], queries[:, None, 1],
                             places["latitude"].to_numpy()[None], places["longitude"].to_numpy()[None])
    index, distance = PlaceIndex(places).query(queries)
    assert np.array_equal(index, distances.argmin(axis=1))
    assert np.allclose(distance, distances.min(axis=1), atol=1e-6)


# places: Windhoek (Namibia, no admin2), Paris, Springfield IL, Berlin (admin2 NaN)
PLACES_CSV = """name,latitude,longitude,cc,admin1,admin2
Windhoek,-22.55941,17.08323,NA,Khomas,
Paris,48.85341,2.3488,FR,Ile-de-France,Paris
Springfield,39.80172,-89.64371,US,Illinois,Sangamon County
Berlin,52.52437,13.41053,DE,Berlin,
"""
TRUTH_CSV = """latitude,longitude,country,region,sub-region,city
-22.5,17.0,NA,Khomas,,Windhoek
-22.9,14.5,NA,Erongo,,Walvis Bay
48.8,2.3,FR,Ile-de-France,,Paris
37.2,-93.3,US,Missouri,Greene County,Springfield
52.5,13.4,DE,Berlin,,Berlin
-22.6,17.1,,Khomas,,Windhoek
"""


def admin_tables():
    places = pd.read_csv(io.StringIO(PLACES_CSV), keep_default_na=False)
    truth = pd.read_csv(io.StringIO(TRUTH_CSV), keep_default_na=False)
    # a table read the careless way has NaN where the label is missing: Berlin's admin2 and sub-region
    places["admin2"] = places["admin2"].astype(object)
    places.loc[3, "admin2"] = np.nan
    truth.loc[4, "sub-region"] = None
    return places, truth


def test_admin_tables_keep_namibia():
    places, truth = admin_tables()
    assert places.loc[0, "cc"] == "NA" and truth.loc[0, "country"] == "NA"
    assert truth.loc[5, "country"] == ""


def test_admin_accuracy_hierarchical_with_missing_labels_and_namibia():
    places, truth = admin_tables()
    # each truth row predicted at the place the test intends (by nearest place to a chosen point)
    pred_points = np.array([[-22.56, 17.08], [-22.56, 17.08], [48.85, 2.35], [39.8, -89.6], [52.5, 13.4],
                            [-22.56, 17.08]])
    pred = predicted_places(pred_points, places)
    assert list(pred["name"]) == ["Windhoek", "Windhoek", "Paris", "Springfield", "Berlin", "Windhoek"]
    assert (pred["distance_km"] < 5).all()
    result = admin_accuracy(pred, truth)
    # country: rows 0-4 compared ("NA" == "NA" counts); row 5 has no true country
    assert result["country"] == {"accuracy": 1.0, "compared": 5, "correct": 5, "missing": 1}
    # region: Erongo and Missouri wrong; row 5 right on its own but its country is missing on one side
    assert result["region"] == {"accuracy": 0.5, "compared": 6, "correct": 3, "missing": 0}
    # sub-region: only Springfield has it on both sides (Sangamon vs Greene); "" and NaN are not compared
    assert result["sub-region"] == {"accuracy": 0.0, "compared": 1, "correct": 0, "missing": 5}
    # city: Windhoek (sub-region missing on both sides agrees) and Berlin (NaN on both sides) only;
    # Paris fails on a sub-region present in the prediction only, Springfield on its state
    assert result["city"] == {"accuracy": pytest.approx(1 / 3), "compared": 6, "correct": 2, "missing": 0}


def test_admin_accuracy_level_by_level():
    places, truth = admin_tables()
    pred = places.iloc[[0, 0, 1, 2, 3, 0]].reset_index(drop=True)
    result = admin_accuracy(pred, truth, hierarchical=False)
    assert {level: (r["correct"], r["compared"]) for level, r in result.items()} == {
        "country": (5, 5), "region": (4, 6), "sub-region": (0, 1), "city": (5, 6)}


def test_admin_accuracy_never_matches_missing_with_missing():
    pred = pd.DataFrame({"cc": ["", None, np.nan, "NA", " "], "name": ["x"] * 5})
    truth = pd.DataFrame({"country": ["", None, np.nan, "NA", "NA"], "city": ["x"] * 5})
    result = admin_accuracy(pred, truth, levels={"country": ("cc", "country"), "city": ("name", "city")})
    assert result["country"] == {"accuracy": 1.0, "compared": 1, "correct": 1, "missing": 4}
    # city: hierarchy agrees where the country is missing on both sides, not on row 4 (missing vs NA)
    assert result["city"]["correct"] == 4
    empty = admin_accuracy(pred.iloc[:3], truth.iloc[:3], levels={"country": ("cc", "country")})
    assert empty["country"]["compared"] == 0 and math.isnan(empty["country"]["accuracy"])


def test_admin_accuracy_checks_its_input():
    places, truth = admin_tables()
    with pytest.raises(ValueError, match="truth rows"):
        admin_accuracy(places, truth)
    with pytest.raises(ValueError, match="no column"):
        admin_accuracy(places, truth.iloc[:4].drop(columns="city"))


def test_nearest_place_in_the_offline_geonames_table():
    from encoderlens.data.places import load_places

    places = load_places()
    pred = predicted_places(np.array([[-22.55, 17.07], [48.86, 2.35], [89.0, 0.0]]), places)
    assert list(pred["name"][:2]) == ["Windhoek", "Paris"]
    assert list(pred["cc"][:2]) == ["NA", "FR"]
    brute = haversine_km(89.0, 0.0, places["latitude"].to_numpy(), places["longitude"].to_numpy())
    assert pred["distance_km"][2] == pytest.approx(brute.min(), rel=1e-9)


# ---- embedding geometry ----------------------------------------------------------------------------
def test_pair_decoding_matches_triu_indices():
    for n in (2, 3, 50, 1001):
        i, j = np.triu_indices(n, k=1)
        got_i, got_j = _pair_from_linear(np.arange(n * (n - 1) // 2), n)
        assert np.array_equal(got_i, i) and np.array_equal(got_j, j)


def test_sample_pairs_distinct_without_self_pairs_and_seeded():
    i, j = sample_pairs(2000, 50_000, seed=3)
    assert len(i) == 50_000 and (i < j).all() and i.min() >= 0 and j.max() < 2000
    assert len(set(zip(i.tolist(), j.tolist()))) == 50_000
    again = sample_pairs(2000, 50_000, seed=3)
    assert np.array_equal(again[0], i) and np.array_equal(again[1], j)
    assert not np.array_equal(sample_pairs(2000, 50_000, seed=4)[0], i)
    i, j = sample_pairs(10, 1000, seed=0)  # more than exist: every pair once
    assert len(i) == 45 and len(set(zip(i.tolist(), j.tolist()))) == 45 and (i < j).all()


def planted_embeddings(n=600, noise=0.3, seed=0):
    """Embeddings whose cosine falls with distance: the location's unit vector plus noise dims."""
    latlon = random_latlon(n, seed)
    rng = np.random.default_rng(seed + 100)
    return np.hstack([3 * latlon_to_unit(latlon), noise * rng.normal(size=(n, 13))]), latlon


def test_cosine_falls_with_distance_for_planted_embeddings():
    embeddings, latlon = planted_embeddings()
    result = cosine_vs_distance(embeddings, latlon, n_pairs=20_000, seed=0)
    assert result["n_pairs"] == 20_000
    assert result["spearman_rho"] < -0.9 and result["pearson_r"] < -0.9
    assert result["spearman_p"] < 1e-10
    bins = result["bins"]
    assert list(bins.columns) == ["lo_km", "hi_km", "count", "cosine_mean", "cosine_std"]
    assert list(bins["lo_km"]) == list(DEFAULT_DISTANCE_BINS_KM[:-1])
    assert bins["count"].sum() + result["outside_bins"] == 20_000 and result["outside_bins"] == 0
    filled = bins[bins["count"] > 0]
    assert (np.diff(filled["cosine_mean"]) < 0).all()
    assert result["cosine_mean"] == pytest.approx(0, abs=0.05)  # uniform on the sphere


def test_random_embeddings_show_no_distance_relation():
    rng = np.random.default_rng(1)
    latlon = random_latlon(600, 2)
    result = cosine_vs_distance(rng.normal(size=(600, 16)), latlon, n_pairs=20_000, seed=0)
    assert abs(result["spearman_rho"]) < 0.05


def test_binned_cosine_edges():
    cosine = [0.1, 0.2, 0.3, 0.4, 0.5]
    distance = [0.5, 1.0, 20000.0, MAX_DISTANCE_KM, 5.0]
    bins = binned_cosine(cosine, distance)
    assert list(bins["count"]) == [1, 2, 0, 0, 0, 2]
    assert bins["cosine_mean"].iloc[1] == pytest.approx(0.35) and bins["cosine_std"].iloc[1] == pytest.approx(0.15)
    assert math.isnan(bins["cosine_mean"].iloc[2])
    narrow = binned_cosine(cosine, distance, bins_km=(1, 10, 100, 1000, 20000))
    assert list(narrow["count"]) == [2, 0, 0, 1]  # 0.5 km and 20,015 km fall outside
    with pytest.raises(ValueError):
        binned_cosine(cosine, distance, bins_km=(10, 1))


def test_effective_rank_and_participation_ratio():
    rng = np.random.default_rng(0)
    isotropic = rng.normal(size=(20_000, 32))
    spectrum = covariance_spectrum(isotropic)
    assert effective_rank(spectrum) == pytest.approx(32, rel=0.01)
    assert participation_ratio(spectrum) == pytest.approx(32, rel=0.02)
    rank_one = rng.normal(size=(500, 1)) * rng.normal(size=(1, 32))
    assert effective_rank(covariance_spectrum(rank_one)) == pytest.approx(1, abs=1e-6)
    assert participation_ratio(covariance_spectrum(rank_one)) == pytest.approx(1, abs=1e-6)
    # spectra written out
    assert effective_rank([1, 1, 0, 0]) == pytest.approx(2) and participation_ratio([1, 1, 0, 0]) == pytest.approx(2)
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert effective_rank([3, 1]) == pytest.approx(math.exp(h)) and participation_ratio([3, 1]) == pytest.approx(1.6)
    # fewer samples than dimensions: the Gram-matrix route gives the same non-zero spectrum
    wide = rng.normal(size=(10, 50))
    centred = wide - wide.mean(0)
    expected = np.linalg.svd(centred, compute_uv=False) ** 2 / 9
    assert np.allclose(covariance_spectrum(wide)[:10], expected)
    with pytest.raises(ValueError, match="do not vary"):
        effective_rank(covariance_spectrum(np.ones((5, 3))))


def test_mean_pairwise_cosine_and_anisotropy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 8)) + 1.5  # shifted: a cone, positive mean cosine
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    cosine = unit @ unit.T
    brute = (cosine.sum() - np.trace(cosine)) / (60 * 59)
    assert mean_pairwise_cosine(x) == pytest.approx(brute, rel=1e-12)
    assert mean_pairwise_cosine([[1, 0], [-2, 0]]) == pytest.approx(-1)
    assert mean_pairwise_cosine([[1, 1], [2, 2], [3, 3]]) == pytest.approx(1)
    result = anisotropy(x)
    assert result["n"] == 60 and result["dim"] == 8
    assert result["mean_pairwise_cosine"] == pytest.approx(brute)
    assert 1 < result["participation_ratio"] <= result["effective_rank"] <= 8
    isotropic = anisotropy(rng.normal(size=(5000, 8)), normalise=True)
    assert abs(isotropic["mean_pairwise_cosine"]) < 0.01 and isotropic["effective_rank"] > 7.9


def _clustered(n, q, d=24, clusters=40, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, d))
    gallery = centres[rng.integers(0, clusters, n)] + 0.4 * rng.normal(size=(n, d))
    queries = centres[rng.integers(0, clusters, q)] + 0.4 * rng.normal(size=(q, d))
    return gallery.astype(np.float32), queries.astype(np.float32)


def test_ivf_with_every_cell_probed_equals_exact_search():
    # issue 16: approximate kNN with exhaustive settings (nprobe = nlist) equals exact search
    from encoderlens.geo.knn import KnnIndex

    gallery, queries = _clustered(1500, 100)
    exact_index, exact_similarity = knn_search(gallery, queries, k=10)
    spec = KnnIndex("ivf", nlist=50, nprobe=50)
    index, similarity = knn_search(gallery, queries, k=10, index=spec)
    assert np.array_equal(index, exact_index)
    np.testing.assert_allclose(similarity, exact_similarity, atol=1e-6)
    built = build_index(gallery, spec=spec)
    assert type(built).__name__ == "IndexIVFFlat" and built.nlist == 50 and built.nprobe == 50
    # on unclustered data, probing 1 cell of 20 is approximate: it misses true neighbours (the index is
    # really IVF)
    noise = np.random.default_rng(1).normal(size=(1600, 24)).astype(np.float32)
    exact_noise, _ = knn_search(noise[100:], noise[:100], k=5)
    few, _ = knn_search(noise[100:], noise[:100], k=5, index=KnnIndex("ivf", nlist=20, nprobe=1))
    recall = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(few, exact_noise)])
    assert 0.05 < recall < 0.9


def test_hnsw_with_a_wide_search_finds_the_exact_neighbours():
    from encoderlens.geo.knn import KnnIndex

    gallery, queries = _clustered(600, 50)
    exact_index, exact_similarity = knn_search(gallery, queries, k=5)
    spec = KnnIndex("hnsw", hnsw_m=16, ef_search=600)  # efSearch = gallery size: the whole graph
    index, similarity = knn_search(gallery, queries, k=5, index=spec)
    assert type(build_index(gallery, spec=spec)).__name__ == "IndexHNSWFlat"
    np.testing.assert_allclose(similarity, exact_similarity, atol=1e-6)
    assert np.mean(index == exact_index) > 0.99  # ties aside


def test_knn_index_settings_come_from_the_config_keys():
    from encoderlens.geo.knn import KnnIndex

    spec = KnnIndex.from_settings({"knn_index": "ivf", "knn_nlist": None, "knn_nprobe": 8, "knn_hnsw_m": 8,
                                   "knn_ef_search": 64, "seed": 3, "knn_k": 10})
    assert (spec.kind, spec.nlist, spec.nprobe, spec.hnsw_m, spec.ef_search, spec.seed) == ("ivf", None, 8, 8, 64, 3)
    assert spec.cells(10_000) == 400 and spec.cells(5) == 5  # about 4 sqrt(n), at most n
    with pytest.raises(ValueError, match="geo.knn_index: unknown index 'lsh'"):
        KnnIndex("lsh")
