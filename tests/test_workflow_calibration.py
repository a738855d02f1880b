"""Distance-calibrated fine-tuning in the demo DAG: trained, re-extracted, scored, compared."""

import json

import h5py
import numpy as np
import pandas as pd
import pytest

from encoderlens.geo.geometry import anisotropy

pytestmark = pytest.mark.e2e

STREETS = "results/demo_streets"


def test_the_calibrated_variant_is_extracted_with_the_merged_adapter(demo_run):
    frozen, tuned = (demo_run / STREETS / "tiny_clip" / v / "embeddings.h5" for v in ("frozen", "distcal"))
    with h5py.File(frozen) as a, h5py.File(tuned) as b:
        assert b.attrs["variant"] == "distcal" and b.attrs["tuned_weights"] == "lora"
        assert a.attrs["variant"] == "frozen" and a.attrs["tuned_weights"] == "none"
        assert list(a["ids"][()]) == list(b["ids"][()])
        assert not np.allclose(a["cls"][()], b["cls"][()], atol=1e-4)
    # only the configured model is calibrated
    assert not (demo_run / STREETS / "tiny_dinov2" / "distcal").exists()


def test_training_used_the_gallery_only_and_a_monotone_target(demo_run):
    folder = demo_run / STREETS / "tiny_clip" / "finetune" / "distcal"
    training = json.loads((folder / "training.json").read_text())
    predictions = pd.read_parquet(demo_run / STREETS / "tiny_clip" / "distcal" / "knn_predictions.parquet")
    manifest = pd.read_parquet(demo_run / STREETS / "manifest.parquet")
    queries = predictions["image_id"].nunique()
    assert training["train_images"] == len(manifest) - queries
    curve = pd.read_parquet(folder / "target_curve.parquet")
    assert (np.diff(curve["target_cosine"]) <= 1e-12).all()
    history = pd.read_csv(folder / "history.csv")
    assert history["epoch"].tolist() == [1, 2, 3]


def test_the_summary_compares_the_two_variants_own_tables(demo_run):
    summary = pd.read_parquet(demo_run / STREETS / "tiny_clip" / "calibration.parquet").set_index("metric")
    for variant, column in (("frozen", "frozen"), ("distcal", "calibrated")):
        knn = pd.read_parquet(demo_run / STREETS / "tiny_clip" / variant / "knn.parquet")
        top1 = knn[(knn["features"] == "cls") & (knn["method"] == "top1")].iloc[0]
        geometry = pd.read_parquet(demo_run / STREETS / "tiny_clip" / variant / "geometry.parquet").iloc[0]
        assert summary.loc["geoscore", column] == pytest.approx(top1["geoscore"])
        assert summary.loc["spearman_rho", column] == pytest.approx(geometry["spearman_rho"])
        with h5py.File(demo_run / STREETS / "tiny_clip" / variant / "embeddings.h5") as handle:
            spectrum = anisotropy(handle["cls"][()], normalise=True)
        assert summary.loc["effective_rank", column] == pytest.approx(spectrum["effective_rank"], rel=1e-6)
    assert summary.loc["geoscore", "change"] == pytest.approx(
        summary.loc["geoscore", "calibrated"] - summary.loc["geoscore", "frozen"])
