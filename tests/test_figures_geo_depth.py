"""Figures of the geographic depth study, on tables shaped like the study's outputs."""

import h5py
import numpy as np
import pandas as pd
from PIL import Image

from encoderlens.report.figures_geo_depth import (plot_cka, plot_continent_forest, plot_failure_gallery,
                                                  plot_regional_world)


def _regional():
    rows = []
    for model, variant in (("a", "frozen"), ("a", "distcal"), ("b", "frozen")):
        for group, n, mean in (("FR", 10, 3000.0), ("NA", 3, 500.0)):
            rows.append(dict(attribute="country", metric="geoscore", group=group, n=n, share=n / 13, mean=mean,
                             ci_low=mean - 100, ci_high=mean + 100, below_min_n=n < 5, p_kruskal=0.01,
                             model=model, variant=variant, centroid_latitude=46.0 if group == "FR" else -22.0,
                             centroid_longitude=2.0 if group == "FR" else 17.0))
        for group, n in (("Europe", 10), ("Africa", 3)):
            rows.append(dict(attribute="continent", metric="geoscore", group=group, n=n, share=n / 13,
                             mean=1000.0, ci_low=np.nan if n < 5 else 900.0, ci_high=np.nan if n < 5 else 1100.0,
                             below_min_n=n < 5, p_kruskal=np.nan, model=model, variant=variant,
                             centroid_latitude=np.nan, centroid_longitude=np.nan))
    return pd.DataFrame(rows)


def test_world_and_forest_draw_every_country_and_continent():
    world = plot_regional_world(_regional())
    assert len(world.data) == 6 and set(world.data["group"]) == {"FR", "NA"}
    assert len(world.figure.axes) == 6  # three maps, three colour bars
    assert "2 countries, 3 models/variants" in world.caption
    forest = plot_continent_forest(_regional())
    assert len(forest.data) == 6
    labels = [t.get_text() for t in forest.figure.axes[0].get_yticklabels()]
    assert labels == ["Africa\n3 queries (23%)", "Europe\n10 queries (77%)"]
    assert "no test" in forest.caption


def test_cka_heatmap_is_symmetric_with_unit_diagonal():
    cka = pd.DataFrame({"model_a": ["a", "a", "b"], "model_b": ["b", "c", "c"], "features_a": "cls",
                        "features_b": "cls", "n_images": 50, "cka": [0.9, 0.2, 0.4]})
    plot = plot_cka(pd.concat([cka, cka.assign(features_b="mean")]))
    image = plot.figure.axes[0].get_images()[0].get_array()
    assert np.allclose(image, [[1, 0.9, 0.2], [0.9, 1, 0.4], [0.2, 0.4, 1]])
    assert len(plot.data) == 3  # cross-feature pairs are not drawn


def test_failure_gallery_shows_each_models_worst_queries(tmp_path):
    ids = [f"q{i}" for i in range(4)]
    for i in ids:
        Image.new("RGB", (32, 24), (i.__hash__() % 255, 40, 90)).save(tmp_path / f"{i}.jpg")
    manifest = pd.DataFrame({"image_id": ids, "path": [f"{i}.jpg" for i in ids]})
    with h5py.File(tmp_path / "a.h5", "w") as store:
        store["ids"] = np.array(ids, dtype=object).astype("S")
        store["cls"] = np.random.default_rng(0).random((4, 2, 3, 4, 4)).astype(np.float16)
    failures = pd.DataFrame({"image_id": ["q0", "q1", "q2", "q0"], "neighbour_id": ["q3", "q3", "q3", "q2"],
                             "features": ["cls", "cls", "cls", "mean"], "method": "top1", "rank": [1, 2, 3, 1],
                             "true_country": "FR", "pred_country": "JP", "distance_km": 9000.0,
                             "geoscore": 10.0, "model": ["a", "a", "a", "a"], "variant": "frozen"})
    plot = plot_failure_gallery(failures, manifest, {"a": str(tmp_path / "a.h5")}, "cls", "top1", n_show=2,
                                root=tmp_path)
    assert plot.data["image_id"].tolist() == ["q0", "q1"]
    axes = plot.figure.axes
    assert len(axes) == 4
    assert len(axes[0].get_images()) == 2  # the photo and its attention overlay
    assert len(axes[1].get_images()) == 1  # the neighbour
    assert axes[0].get_title().startswith("#1 FR -> JP")


def test_cka_heatmap_draws_a_layer_by_layer_panel_per_model_pair():
    layers = [("layers/0", "layers/0", 0.9), ("layers/0", "layers/2", 0.3), ("layers/3", "layers/0", 0.5),
              ("layers/3", "layers/2", 0.8), ("layers/3", "cls", 0.1)]
    cka = pd.DataFrame({"model_a": "a", "model_b": "b", "features_a": [a for a, _, _ in layers],
                        "features_b": [b for _, b, _ in layers], "n_images": 40, "cka": [v for _, _, v in layers]})
    cka = pd.concat([cka, pd.DataFrame({"model_a": ["a"], "model_b": ["b"], "features_a": ["cls"],
                                        "features_b": ["cls"], "n_images": [40], "cka": [0.7]})])
    plot = plot_cka(cka)
    shown = [ax for ax in plot.figure.axes if ax.get_visible() and ax.get_images()]
    assert len(shown) == 2
    assert np.allclose(shown[0].get_images()[0].get_array(), [[1, 0.7], [0.7, 1]])
    # a's layers 0, 3 down, b's layers 0, 2 across; mixed layer/cls pairs are not drawn
    assert np.allclose(shown[1].get_images()[0].get_array(), [[0.9, 0.3], [0.5, 0.8]])
    assert [t.get_text() for t in shown[1].get_yticklabels()] == ["0", "3"]
    assert shown[1].get_xlabel() == "b layer" and len(plot.data) == 5
    assert "every stored layer" in plot.caption


def test_failure_gallery_adds_each_models_most_confident_probe_errors(tmp_path):
    ids = [f"q{i}" for i in range(4)]
    for k, i in enumerate(ids):
        Image.new("RGB", (32, 24), (60 * k, 40, 90)).save(tmp_path / f"{i}.jpg")
    manifest = pd.DataFrame({"image_id": ids, "path": [f"{i}.jpg" for i in ids]})
    knn = pd.DataFrame({"kind": "knn", "image_id": ["q0"], "neighbour_id": ["q3"], "neighbours": ["q3 q2"],
                        "features": "cls", "method": "top1", "rank": [1], "true_country": "FR",
                        "pred_country": "JP", "distance_km": 9000.0, "geoscore": 10.0, "model": "a",
                        "variant": "frozen"})
    probe = pd.DataFrame({"kind": "probe", "image_id": ["q1", "q2", "q1"], "neighbours": ["q2 q3", "q0", "q0"],
                          "features": "cls", "method": "probe", "level": ["country", "country", "region"],
                          "rank": [1, 2, 1], "true_label": "FR", "pred_label": ["DE", "JP", "X_DE"],
                          "confidence": [0.93, 0.8, 0.7], "distance_km": 880.0, "geoscore": np.nan,
                          "model": "a", "variant": "frozen"})
    plot = plot_failure_gallery(pd.concat([knn, probe]), manifest, {}, "cls", "top1", n_show=2, root=tmp_path)
    assert plot.data["image_id"].tolist() == ["q0", "q1", "q2"]  # country-level probe errors only
    axes = np.array(plot.figure.axes).reshape(2, 4)
    assert axes[1, 0].get_title() == "#1 FR -> DE\np = 0.93, 880 km"
    assert axes[1, 0].get_ylabel() == "a\nprobe errors"
    assert len(axes[1, 1].get_images()) == 1  # its nearest gallery image (first of its neighbours)
    assert "probe got wrong with the highest confidence" in plot.caption
