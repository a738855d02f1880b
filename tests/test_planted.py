"""The planted answers of the synthetic streets, and the checks that look for them."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from encoderlens.data.places import countries
from encoderlens.data.synthetic_streets import PLANTED, write_synthetic_streets
from encoderlens.geo.planted import planted_checks, shuffled_gallery_geoscore
from encoderlens.geo.distance import geoscore, haversine_km


@pytest.fixture(scope="module")
def streets(tmp_path_factory):
    root = tmp_path_factory.mktemp("streets")
    write_synthetic_streets(root, n_images=96, seed=3, width=48, height=36, n_countries=8)
    table = pd.read_csv(root / "test.csv", dtype=str, keep_default_na=False)
    pixels = np.stack([np.asarray(Image.open(root / "images/test/00" / f"{i}.jpg"), dtype=np.float64)
                       for i in table["id"]])
    return table, pixels


def _nearest_centroid_accuracy(features, labels, rng):
    """Leave-one-out nearest class mean."""
    correct = 0
    for i in range(len(labels)):
        others = np.arange(len(labels)) != i
        classes = sorted(set(labels[others]))
        centroids = np.stack([features[others & (labels == c)].mean(axis=0) for c in classes])
        correct += classes[np.argmin(((centroids - features[i]) ** 2).sum(axis=1))] == labels[i]
    return correct / len(labels)


def test_country_cast_is_carried_by_mean_colour_except_under_fog(streets):
    table, pixels = streets
    mean_colour = pixels.mean(axis=(1, 2))
    country = table["country"].replace({"NMB": "NA"}).to_numpy()
    continent = dict(zip(countries()["cc"], countries()["continent"]))
    column, value = PLANTED["hard_attribute"]
    fogged = (table[column] == str(value)).to_numpy()
    weak = np.array([continent[c] == PLANTED["weak_continent"] for c in country])
    clear = ~fogged & ~weak
    rng = np.random.default_rng(0)
    assert _nearest_centroid_accuracy(mean_colour[clear], country[clear], rng) > 0.8
    # fog washes the cast out: the fogged images' mean colour is close to grey
    chroma = mean_colour.max(axis=1) - mean_colour.min(axis=1)
    assert fogged.sum() >= 5
    assert chroma[fogged].mean() < 0.4 * chroma[clear].mean()


def test_unplanted_streets_carry_no_cast(tmp_path):
    write_synthetic_streets(tmp_path, n_images=64, seed=3, width=48, height=36, n_countries=8, planted=False)
    table = pd.read_csv(tmp_path / "test.csv", dtype=str, keep_default_na=False)
    colours = np.stack([np.asarray(Image.open(tmp_path / "images/test/00" / f"{i}.jpg"), dtype=np.float64)
                        .mean(axis=(0, 1)) for i in table["id"]])
    country = table["country"].replace({"NMB": "NA"}).to_numpy()
    assert _nearest_centroid_accuracy(colours, country, None) < 0.6


def test_shuffled_gallery_reference_is_the_pairwise_mean():
    rng = np.random.default_rng(1)
    queries, gallery = rng.uniform(-60, 60, (5, 2)), rng.uniform(-60, 60, (7, 2))
    expected = np.mean([geoscore(haversine_km(q[0], q[1], g[0], g[1])) for q in queries for g in gallery])
    assert shuffled_gallery_geoscore(queries, gallery) == pytest.approx(expected)


def test_planted_checks_read_the_study_outputs():
    manifest = pd.DataFrame({"image_id": [f"i{k}" for k in range(8)],
                             "country": ["FR", "FR", "NA", "NMB", "JP", "JP", "FR", "JP"],
                             "latitude": [46, 46, -22, -22, 36, 36, 46, 36.0],
                             "longitude": [2, 2, 17, 17, 139, 139, 2, 139.0],
                             "land_cover": ["8", "1", "2", "3", "8", "1", "1", "1"]})
    probes = {"m": pd.DataFrame({"level": ["country", "country", "region"], "features": ["cls", "mean", "cls"],
                                 "probeable": [True, True, True], "top1": [0.5, 0.75, 0.1],
                                 "majority_top1": [0.4, 0.4, 0.3], "n_test": [4, 4, 4]})}
    predictions = {"m": pd.DataFrame({"image_id": ["i0", "i1", "i2", "i3"], "features": "cls", "method": "top1",
                                      "geoscore": [100.0, 4000.0, 50.0, 200.0]})}
    checks = planted_checks(manifest, probes, predictions, PLANTED, "cls").set_index("check")
    assert checks.loc["probe_country_above_majority", "observed"] == 0.75
    assert checks.loc["probe_country_above_majority", "note"] == "features mean"
    hard = checks.loc["failures_in_hard_attribute"]
    assert (hard["observed"], hard["reference"], hard["n"]) == (pytest.approx(4250 / 3), 100.0, 1)
    weak = checks.loc["weak_region_gap"]  # NA and NMB are both Namibia, in Africa
    assert (weak["observed"], weak["reference"], weak["n"]) == (2050.0, 125.0, 2)
    assert checks["recovered"].all()
    knn = checks.loc["knn_above_shuffled_gallery"]
    assert knn["observed"] == pytest.approx(1087.5) and knn["reference"] < knn["observed"]
