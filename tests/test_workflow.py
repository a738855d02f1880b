"""The real snakemake on the demo config, end to end, in a temporary copy of the workflow."""

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import snakemake

from encoderlens.attention.methods import METHOD_NAMES

pytestmark = pytest.mark.e2e


def demo_config(workdir):
    return yaml.safe_load((workdir / "config.yaml").read_text())


def test_every_dataset_has_a_manifest(demo_run):
    config = demo_config(demo_run)
    for dataset, entry in config["datasets"].items():
        manifest = pd.read_parquet(demo_run / "results" / dataset / "manifest.parquet")
        assert len(manifest) == entry["synthetic"]["n_images"]
        assert manifest["image_id"].is_unique
        assert {"image_id", "path", "split"} <= set(manifest.columns)
        assert all((demo_run / path).is_file() for path in manifest["path"])
    annotations = pd.read_parquet(demo_run / "results/demo_churches/annotations.parquet")
    assert len(annotations) > 0 and annotations["clamped"].any()
    assert annotations[["left", "top", "width", "height"]].min().min() >= 0


def test_every_extraction_follows_the_contract(demo_run):
    config = demo_config(demo_run)
    for dataset, entry in config["datasets"].items():
        ids = pd.read_parquet(demo_run / "results" / dataset / "manifest.parquet")["image_id"].tolist()
        for model in entry["models"]:
            family = config["models"][model]["family"]
            folder = demo_run / "results" / dataset / model / "frozen"
            with h5py.File(folder / "embeddings.h5") as embeddings, \
                    h5py.File(folder / "attention.h5") as attention:
                assert [i.decode() for i in embeddings["ids"][()]] == ids
                assert [i.decode() for i in attention["ids"][()]] == ids
                assert embeddings.attrs["family"] == family
                assert embeddings["cls"].shape[0] == embeddings["mean"].shape[0] == len(ids)
                gh, gw = attention.attrs["grid_h"], attention.attrs["grid_w"]
                if family in ("dinov2", "dinov3", "mae", "clip"):
                    assert attention["cls"].shape[0] == len(ids)
                    assert attention["cls"].shape[-2:] == (gh, gw)
                    assert attention["rollout"].shape == (len(ids), gh, gw)
                if family == "siglip":
                    assert attention["mean"].shape[-2:] == attention["map_probe"].shape[-2:] == (gh, gw)
            assert (demo_run / "logs/extract" / dataset / model / "frozen.log").is_file()
            assert not (folder / ".extract_shards").exists()


def test_per_layer_embeddings_are_stored_when_configured(demo_run):
    with h5py.File(demo_run / "results/demo_streets/tiny_clip/frozen/embeddings.h5") as handle:
        assert sorted(handle["layers"].keys(), key=int)[0] == "0"
        assert len(handle["layers"]) == 2
        assert "cls_raw" in handle


def test_a_second_run_has_nothing_to_do(demo_run):
    result = snakemake(demo_run, "--cores", "2", "--dry-run")
    assert result.returncode == 0
    assert "Nothing to be done" in result.stdout + result.stderr


def test_alignment_scores_every_stored_map_of_every_annotated_image(demo_run):
    import numpy as np

    config = demo_config(demo_run)
    thresholds = [10, 15, 20, 25, 30, 40, 50]
    annotations = pd.read_parquet(demo_run / "results/demo_churches/annotations.parquet")
    annotated = set(annotations["image_id"])
    columns = ["image_id", "model", "variant", "method", "layer", "head", "threshold", "iou",
               "coverage", "pointing_hit", "scorable"]
    for model in config["datasets"]["demo_churches"]["models"]:
        folder = demo_run / "results/demo_churches" / model / "frozen"
        table = pd.read_parquet(folder / "alignment.parquet")
        assert list(table.columns) == columns
        assert set(table["image_id"]) == annotated
        assert sorted(table["threshold"].unique()) == thresholds
        with h5py.File(folder / "attention.h5") as attention:
            methods = {name for name in METHOD_NAMES if name in attention}
            expected_maps = 0
            if "cls" in attention:
                _, layers, heads, _, _ = attention["cls"].shape
                expected_maps += layers * (heads + 1)  # every head and the head mean
            if "mean" in attention:
                expected_maps += attention["mean"].shape[1]
            if "map_probe" in attention:
                expected_maps += attention["map_probe"].shape[1] + 1
            # one map per image for the whole-model methods (rollout and the gradient methods)
            expected_maps += sum(name in attention for name in ("rollout", "gradcam", "chefer", "ig"))
        assert set(table["method"]) == methods
        assert len(table) == len(annotated) * expected_maps * len(thresholds)
        assert table["scorable"].all()
        assert table["iou"].between(0, 1).all() and table["coverage"].between(0, 1).all()
        # coverage and the pointing game do not depend on the threshold
        per_map = table.groupby(["image_id", "method", "layer", "head"])
        assert (per_map["coverage"].nunique() == 1).all()
        # IoU regions grow with the threshold, so the region's IoU changes: not a constant column
        assert table["iou"].std() > 0
        features = pd.read_parquet(folder / "alignment_features.parquet")
        assert set(zip(features["image_id"], features["feature"])) == set(
            zip(annotations["image_id"], annotations["feature"]))
    baselines = pd.read_parquet(demo_run / "results/demo_churches/baselines/alignment.parquet")
    assert set(baselines["method"]) == {"random", "gaussian", "sobel"}
    assert len(baselines) == len(annotated) * 3 * len(thresholds)
    # the random baseline's expected IoU is small and never above the mask-limited maximum
    random = baselines[baselines["method"] == "random"]
    assert np.nanmean(random["iou"]) < 0.2


def test_street_view_studies_write_their_tables(demo_run):
    config = demo_config(demo_run)
    manifest = pd.read_parquet(demo_run / "results/demo_streets/manifest.parquet")
    for model in config["datasets"]["demo_streets"]["models"]:
        probes = pd.read_parquet(demo_run / "results/demo_streets" / model / "probes.parquet")
        assert set(probes["level"]) == {"country", "region", "sub-region", "city"}
        country = probes[(probes["level"] == "country") & (probes["features"] == "cls")].iloc[0]
        assert country["n_train"] + country["n_test"] + country["dropped_samples"] == len(manifest)
        assert country["n_classes"] == manifest["country"].value_counts().ge(2).sum()
        assert 0 <= country["top1"] <= country["top5"] <= 1
        # regions are classes by OSV-5M's key (name and country), not by bare name
        region = probes[(probes["level"] == "region") & (probes["features"] == "cls")].iloc[0]
        keys = manifest.loc[manifest["unique_region"] != "", "unique_region"]
        assert region["n_classes"] == keys.value_counts().ge(2).sum()

        folder = demo_run / "results/demo_streets" / model / "frozen"
        knn = pd.read_parquet(folder / "knn.parquet")
        assert set(knn["method"]) == {"top1", "weighted_top10"}
        predictions = pd.read_parquet(folder / "knn_predictions.parquet")
        top1 = predictions[predictions["method"] == "top1"]
        # the table's GeoScore is the mean of the per-query scores, and those follow the formula
        assert knn.loc[knn["method"] == "top1", "geoscore"].iloc[0] == pytest.approx(top1["geoscore"].mean())
        assert np.allclose(top1["geoscore"], 5000 * np.exp(-top1["distance_km"] / 1492.7))
        assert knn["country_compared"].iloc[0] == len(top1)
        geometry = pd.read_parquet(folder / "geometry.parquet")
        assert geometry["n_pairs"].iloc[0] == 2000 and -1 <= geometry["spearman_rho"].iloc[0] <= 1
        gallery = pd.read_parquet(folder / "gallery.parquet")
        assert set(gallery["gallery"]) == {"representative", "random"} and (gallery["size"] == 40).all()
        stats = pd.read_parquet(folder / "attention_stats.parquet")
        assert len(stats) == len(manifest) and stats["scorable"].all()
        assert np.allclose(stats["entropy_norm"], stats["entropy"] / np.log(stats["n_patches"]))
        by_country = pd.read_parquet(folder / "attention_stats_by_country.parquet")
        assert "NA" in set(by_country["country"])  # Namibia survives every read
        assert by_country["count"].sum() == len(manifest)
