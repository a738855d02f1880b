"""The fine-tuning stage in the demo run: weights, histories, tuned extraction and the ΔIoU table."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml

from encoderlens.finetune.delta import DELTA_COLUMNS

pytestmark = pytest.mark.e2e

DATASET = "demo_churches"


@pytest.fixture(scope="module")
def config(demo_run):
    return yaml.safe_load((demo_run / "config.yaml").read_text())


def _tuned(config):
    return [(model, strategy) for model in config["finetune"]["models"]
            for strategy in config["finetune"]["strategies"]]


def test_each_strategy_leaves_its_weights_history_and_metrics(demo_run, config):
    for model, strategy in _tuned(config):
        folder = demo_run / "results" / DATASET / model / "finetune" / strategy
        weights = {"linear": "head.safetensors", "lora": "adapter/adapter_model.safetensors",
                   "full": "backbone.safetensors"}[strategy]
        assert (folder / weights).is_file() and (folder / "head.safetensors").is_file()
        history = pd.read_csv(folder / "history.csv")
        assert list(history.columns) == ["epoch", "train_loss", "val_loss", "val_accuracy", "lr"]
        assert history["epoch"].tolist() == list(range(1, len(history) + 1))
        metrics = json.loads((folder / "metrics.json").read_text())
        assert 0 <= metrics["val_accuracy"] <= 1 and 0 <= metrics["heldout_accuracy"] <= 1
        assert metrics["val_accuracy"] == pytest.approx(history["val_accuracy"].max())
        split = pd.read_csv(folder / "split.csv", keep_default_na=False)
        manifest = pd.read_parquet(demo_run / "results" / DATASET / "manifest.parquet")
        annotated = set(manifest.loc[manifest["split"] == "annotated", "image_id"])
        assert set(split.loc[split["role"] == "heldout", "image_id"]) == annotated
        assert not annotated & set(split.loc[split["role"].isin(["train", "val"]), "image_id"])
        assert not (folder.parent / f"{strategy}.work").exists()


def test_tuned_variants_are_extracted_on_the_heldout_images(demo_run, config):
    manifest = pd.read_parquet(demo_run / "results" / DATASET / "manifest.parquet")
    annotated = manifest.loc[manifest["split"] == "annotated", "image_id"].tolist()
    for model, strategy in _tuned(config):
        with h5py.File(demo_run / "results" / DATASET / model / strategy / "attention.h5", "r") as store:
            assert [i.decode() for i in store["ids"][()]] == annotated
            assert store.attrs["variant"] == strategy and store.attrs["images"] == "annotated"
            assert store.attrs["tuned_weights"] == {"linear": "none", "lora": "lora", "full": "partial"}[strategy]
            assert store.attrs["map_target"] == "class_score"  # every strategy leaves a head to explain


def test_delta_iou_table(demo_run, config):
    for model in config["finetune"]["models"]:
        folder = demo_run / "results" / DATASET / model
        delta = pd.read_parquet(folder / "finetune" / "delta_iou.parquet")
        assert list(delta.columns) == DELTA_COLUMNS
        assert set(delta["variant"]) == set(config["finetune"]["strategies"])
        frozen = pd.read_parquet(folder / "frozen" / "alignment.parquet")
        for variant, rows in delta.groupby("variant"):
            tuned = pd.read_parquet(folder / variant / "alignment.parquet")
            merged = rows.merge(frozen, on=["image_id", "method", "layer", "head", "threshold"])
            np.testing.assert_allclose(merged["iou_frozen"], merged["iou"])
            merged = rows.merge(tuned, on=["image_id", "method", "layer", "head", "threshold"])
            np.testing.assert_allclose(merged["iou_tuned"], merged["iou"])
            np.testing.assert_allclose(rows["delta_iou"], rows["iou_tuned"] - rows["iou_frozen"])
        # a linear head leaves the backbone untouched: its attention, hence its IoU, equals frozen
        linear = delta[delta["variant"] == "linear"]
        assert len(linear) and (linear["delta_iou"] == 0).all()
        assert ((linear["retention"] == 1) | linear["retention"].isna()).all()
        retention = pd.read_parquet(folder / "finetune" / "retention.parquet")
        assert set(retention["variant"]) == set(config["finetune"]["strategies"])


def test_style_probe_for_every_annotated_model(demo_run, config):
    for model in config["datasets"][DATASET]["models"]:
        table = pd.read_parquet(demo_run / "results" / DATASET / model / "style_probe.parquet")
        assert set(table["feature"]) == {"cls", "mean"}
        assert (table["n_classes"] == 4).all() and (table["n_images"] == 100).all()
        assert table["accuracy"].between(0, 1).all()
