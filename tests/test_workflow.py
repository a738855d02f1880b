"""The real snakemake on the demo config, end to end, in a temporary copy of the workflow."""

import h5py
import pandas as pd
import pytest
import yaml

from conftest import copy_workflow, snakemake

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    workdir = copy_workflow(tmp_path_factory.mktemp("demo") / "workflow")
    result = snakemake(workdir, "--cores", "2")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return workdir


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
