"""The geographic depth study in the demo DAG: planted answers recovered, failures, regions, models."""

import numpy as np
import pandas as pd
import pytest

from encoderlens.geo.compare import linear_cka
from encoderlens.geo.job import read_features

pytestmark = pytest.mark.e2e

STREETS = "results/demo_streets"
MODELS = ("tiny_clip", "tiny_dinov2")


def test_every_planted_answer_is_recovered(demo_run):
    checks = pd.read_parquet(demo_run / STREETS / "geo" / "planted.parquet")
    assert set(checks["model"]) == set(MODELS)
    assert set(checks["check"]) == {"probe_country_above_majority", "knn_above_shuffled_gallery",
                                    "failures_in_hard_attribute", "weak_region_gap"}
    assert checks["recovered"].all(), checks.to_string()
    assert (checks.loc[checks["check"] == "failures_in_hard_attribute", "n"] >= 3).all()
    log = (demo_run / "logs" / "geo" / "demo_streets" / "planted_answers.log").read_text()
    assert "planted answers recovered: 8 of 8 checks (all)" in log


def test_failures_concentrate_in_the_planted_attribute(demo_run):
    groups = pd.read_parquet(demo_run / STREETS / "geo" / "failure_attributes.parquet")
    cover = groups[(groups["attribute"] == "land_cover") & (groups["metric"] == "geoscore")
                   & (groups["variant"] == "frozen")]
    for model, block in cover.groupby("model"):
        block = block.set_index("group")
        assert block["mean"].idxmin() == "8", (model, block["mean"])
        assert block["share"].sum() == pytest.approx(1.0)
    failures = pd.read_parquet(demo_run / STREETS / "geo" / "failures.parquet")
    predictions = pd.read_parquet(demo_run / STREETS / "tiny_clip" / "frozen" / "knn_predictions.parquet")
    worst = failures[(failures["model"] == "tiny_clip") & (failures["variant"] == "frozen")
                     & (failures["features"] == "cls") & (failures["method"] == "top1")]
    chosen = predictions[(predictions["features"] == "cls") & (predictions["method"] == "top1")]
    assert worst["geoscore"].tolist() == sorted(chosen["geoscore"])[:len(worst)]


def test_regions_models_and_cka(demo_run):
    regional = pd.read_parquet(demo_run / STREETS / "geo" / "regional.parquet")
    assert {"continent", "country"} == set(regional["attribute"])
    assert {"geoscore", "distance_km", "correct", "entropy", "top10_mass", "n_above_mean", "gini"} <= set(
        regional["metric"])
    countries = regional[regional["attribute"] == "country"]
    assert countries[["centroid_latitude", "centroid_longitude"]].notna().all().all()
    comparisons = pd.read_parquet(demo_run / STREETS / "geo" / "model_comparisons.parquet")
    pairs = set(zip(comparisons["model_a"], comparisons["model_b"]))
    assert pairs == {("tiny_clip", "tiny_clip/distcal"), ("tiny_clip", "tiny_dinov2"),
                     ("tiny_clip/distcal", "tiny_dinov2")}
    assert set(comparisons["test"]) == {"geoscore_paired_bootstrap", "country_top1_mcnemar"}
    cka = pd.read_parquet(demo_run / STREETS / "geo" / "cka.parquet")
    row = cka[(cka["model_a"] == "tiny_clip") & (cka["model_b"] == "tiny_dinov2")
              & (cka["features_a"] == "cls") & (cka["features_b"] == "cls")].iloc[0]
    ids_a, a = read_features(demo_run / STREETS / "tiny_clip" / "frozen" / "embeddings.h5", ["cls"])
    ids_b, b = read_features(demo_run / STREETS / "tiny_dinov2" / "frozen" / "embeddings.h5", ["cls"])
    assert ids_a == ids_b
    assert row["cka"] == pytest.approx(linear_cka(a["cls"], b["cls"]))
    for name in ("regional_world", "regional_continents", "cka", "failure_gallery"):
        assert (demo_run / "results" / "figures" / "demo_streets" / f"{name}.png").stat().st_size > 10_000


def test_probe_answers_failures_and_regional_probe_accuracy(demo_run):
    """Per-image probe answers agree exactly with probes.parquet; the most confident errors join the
    failures, probe accuracy per continent joins regional.parquet, CKA compares every stored layer."""
    failures = pd.read_parquet(demo_run / STREETS / "geo" / "failures.parquet")
    regional = pd.read_parquet(demo_run / STREETS / "geo" / "regional.parquet")
    for model in MODELS:
        probes = pd.read_parquet(demo_run / STREETS / model / "probes.parquet")
        answers = pd.read_parquet(demo_run / STREETS / model / "probe_predictions.parquet")
        for row in probes[probes["probeable"]].itertuples():
            own = answers[(answers["level"] == row.level) & (answers["features"] == row.features)]
            assert len(own) == row.n_test and own["correct"].mean() == row.top1, (model, row.level, row.features)
        errors = failures[(failures["model"] == model) & (failures["kind"] == "probe")
                          & (failures["level"] == "country") & (failures["features"] == "cls")]
        wrong = answers[(answers["level"] == "country") & (answers["features"] == "cls") & ~answers["correct"]]
        assert errors["image_id"].tolist() == wrong.nlargest(len(errors), "confidence")["image_id"].tolist()
        assert len(errors) == min(20, len(wrong)) and errors["distance_km"].notna().all()
        assert failures.loc[failures["model"] == model, "neighbours"].str.split().str.len().eq(3).all()
        accuracy = regional[(regional["model"] == model) & (regional["variant"] == "frozen")
                            & (regional["metric"] == "probe_top1_country") & (regional["attribute"] == "continent")]
        country = answers[(answers["level"] == "country") & (answers["features"] == "cls")]
        assert accuracy["n"].sum() == len(country) and accuracy["share"].sum() == pytest.approx(1.0)
        assert (accuracy["mean"] * accuracy["n"]).sum() / len(country) == pytest.approx(country["correct"].mean())
    cka = pd.read_parquet(demo_run / STREETS / "geo" / "cka.parquet")
    layered = cka[(cka["model_a"] == "tiny_clip") & (cka["model_b"] == "tiny_dinov2")
                  & cka["features_a"].str.startswith("layers/") & cka["features_b"].str.startswith("layers/")]
    assert len(layered) == 4  # two stored layers each
    summary = (demo_run / "results" / "summary.md").read_text()
    assert "Worst failures per model" in summary
