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
