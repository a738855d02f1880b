"""Street-view, caption and fine-tuning figures: the marks drawn are the tables' numbers."""

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PolyCollection
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

from encoderlens.geo.job import geometry_study
from encoderlens.report.figures_captions import (continent_matrix, every_caption_distribution,
                                                 plot_caption_continents)
from encoderlens.report.figures_finetune import delta_table, plot_delta_iou
from encoderlens.report.figures_geo import (ecdf, geometry_pairs, plot_cosine_distance, plot_gallery,
                                            plot_geoscore, plot_probe_accuracy, probe_table,
                                            wilson_interval)

BINS_KM = [0, 100, 1000, 5000, 20100]


def test_wilson_interval_matches_statsmodels():
    successes = np.array([0, 1, 7, 25, 40, 40])
    trials = np.array([25, 25, 30, 25, 41, 40])
    low, high = wilson_interval(successes, trials)
    want_low, want_high = proportion_confint(successes, trials, alpha=0.05, method="wilson")
    np.testing.assert_allclose(low, want_low, atol=1e-12)
    np.testing.assert_allclose(high, want_high, atol=1e-12)
    assert low[0] == 0 and high[-1] == 1  # never on the wrong side of p by rounding


def probes():
    rows = []
    for model, accuracy in (("clip", 0.4), ("dino", 0.2)):
        for level, n_test in (("country", 50), ("region", 20), ("city", 10)):
            rows.append(dict(model=model, level=level, features="cls", n_test=n_test, top1=accuracy,
                             majority_top1=0.1, probeable=level != "city"))
    return pd.DataFrame(rows)


def test_probe_bars_are_the_top1_accuracies_with_wilson_whiskers():
    plot = plot_probe_accuracy(probes())
    table = probe_table(probes())
    assert set(table["level"]) == {"country", "region"}  # the unprobeable level is left out
    assert table["correct"].tolist() == [20, 10, 8, 4]
    bars = {p.get_gid(): p for ax in plot.figure.axes for p in ax.patches if p.get_gid()}
    assert bars["bar:country:clip:cls"].get_height() == pytest.approx(40.0)
    assert bars["bar:region:dino:cls"].get_height() == pytest.approx(20.0)
    low, high = proportion_confint(4, 20, method="wilson")
    row = table[(table["level"] == "region") & (table["model"] == "dino")].iloc[0]
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((low, high))


@pytest.fixture
def geometry():
    rng = np.random.default_rng(0)
    n = 50
    latlon = np.column_stack([rng.uniform(-50, 60, n), rng.uniform(-120, 140, n)])
    embeddings = np.column_stack([latlon / 60, rng.normal(size=(n, 5))]).astype(np.float32)
    table = pd.DataFrame({"image_id": [f"i{k}" for k in range(n)], "latitude": latlon[:, 0],
                          "longitude": latlon[:, 1]})
    _, bins = geometry_study({"cls": embeddings}, table, n_pairs=600, seed=4, bins_km=BINS_KM)
    return embeddings, latlon, bins.drop(columns="features")


def test_pairs_are_the_geometry_study_pairs_and_a_stale_table_is_refused(geometry):
    embeddings, latlon, bins = geometry
    pairs = geometry_pairs(embeddings, latlon, 600, 4, BINS_KM, bins, source="x.h5")
    assert len(pairs) == 600
    inside = pairs[(pairs["distance_km"] >= 100) & (pairs["distance_km"] < 1000)]
    assert inside["cosine"].mean() == pytest.approx(bins.loc[1, "cosine_mean"], rel=1e-12)
    with pytest.raises(ValueError, match="out of step"):
        geometry_pairs(embeddings, latlon, 600, 5, BINS_KM, bins, source="x.h5")  # another seed


def test_cosine_distance_hexbin_holds_every_pair_and_the_line_is_the_table(geometry):
    embeddings, latlon, bins = geometry
    pairs = geometry_pairs(embeddings, latlon, 600, 4, BINS_KM, bins)
    plot = plot_cosine_distance([("clip · cls", pairs, bins)], gridsize=12)
    ax = plot.figure.axes[0]
    (hexes,) = [c for c in ax.collections if isinstance(c, PolyCollection) and c.get_array() is not None]
    assert np.sum(hexes.get_array()) == 600  # counts, drawn on a log colour scale
    steps = {line.get_gid(): line for line in ax.get_lines() if (line.get_gid() or "").startswith("binmean")}
    filled = bins[bins["count"] > 0]
    assert len(steps) == len(filled)
    for _, row in filled.iterrows():
        line = steps[f"binmean:clip · cls:{row['lo_km']:g}-{row['hi_km']:g}"]
        # a log distance axis: the first bin starts at 0 km, drawn from the axis' 1 km floor
        assert list(line.get_xdata()) == [max(row["lo_km"], 1.0), row["hi_km"]]
        assert list(line.get_ydata()) == pytest.approx([row["cosine_mean"]] * 2)
    assert ax.get_xscale() == "log" and ax.get_xlim()[0] == 1.0


def test_geoscore_curves_are_the_empirical_cdf():
    rng = np.random.default_rng(2)
    predictions = pd.DataFrame({"model": "clip", "variant": "frozen", "features": "cls",
                                "method": np.repeat(["top1", "weighted_top10"], 40),
                                "geoscore": rng.uniform(0, 5000, 80)})
    plot = plot_geoscore(predictions)
    lines = {line.get_gid(): line for ax in plot.figure.axes for line in ax.get_lines() if line.get_gid()}
    top1 = np.sort(predictions.loc[predictions["method"] == "top1", "geoscore"])
    curve = lines["ecdf:top1:clip [frozen] · cls"]
    np.testing.assert_allclose(curve.get_xdata()[1:-1], top1)
    np.testing.assert_allclose(curve.get_ydata()[1:-1], np.arange(1, 41) / 40)
    row = plot.data.set_index("method").loc["top1"]
    assert row["median"] == pytest.approx(np.median(top1)) and row["n"] == 40
    # with the error in km: a second row, its CDF on a log axis
    predictions["distance_km"] = np.r_[np.geomspace(0.5, 15000, 40), np.geomspace(2, 9000, 40)]
    plot = plot_geoscore(predictions)
    lower = [ax for ax in plot.figure.axes if ax.get_xscale() == "log"]
    assert len(lower) == 2
    lines = {line.get_gid(): line for ax in lower for line in ax.get_lines() if line.get_gid()}
    km = lines["ecdf_km:top1:clip [frozen] · cls"]
    expected = np.maximum(np.sort(predictions.loc[predictions["method"] == "top1", "distance_km"]), 1.0)
    np.testing.assert_allclose(km.get_xdata()[1:], expected)
    np.testing.assert_allclose(km.get_ydata()[1:], np.arange(1, 41) / 40)
    assert plot.data.set_index("method").loc["top1", "median_km"] == pytest.approx(
        np.median(predictions.loc[predictions["method"] == "top1", "distance_km"]))
    x, y = ecdf([3.0, np.nan, 1.0])
    assert list(x) == [1.0, 3.0] and list(y) == [0.5, 1.0]


def test_gallery_bars_are_the_group_table():
    groups = pd.DataFrame({"bin": ["1", "2-3", "4-10"], "n_groups": [30, 7, 2], "n_images": [30, 17, 11]})
    gallery = pd.DataFrame({"model": "clip", "variant": "frozen", "seed": [0, 0, 1, 1],
                            "gallery": ["representative", "random"] * 2, "geoscore": [900, 700, 1100, 650]})
    plot = plot_gallery(groups, gallery)
    bars = [p for p in plot.figure.axes[0].patches if p.get_gid() == "bar:n_groups"]
    assert [b.get_height() for b in bars] == [30, 7, 2]
    means = plot.data[plot.data["panel"] == "gallery"].set_index("gallery")["geoscore_mean"]
    assert means["representative"] == 1000 and means["random"] == 675


def test_caption_continent_heatmap_is_the_share_table_all_first_unknown_last():
    rows = []
    for entity, shares in (("all", {"Europe": 0.5, "Asia": 0.3, "Unknown": 0.2}),
                           ("ngo", {"Europe": 0.2, "Asia": 0.6, "Unknown": 0.2}),
                           ("brand", {"Europe": 1.0})):
        total = 10
        for place, share in shares.items():
            rows.append(dict(entity=entity, level="continent", place=place, count=round(share * total),
                             share=share))
        rows.append(dict(entity=entity, level="country", place="DE", count=1, share=0.1))
    matrix, entities, continents, totals = continent_matrix(pd.DataFrame(rows))
    assert entities == ["all", "brand", "ngo"] and continents == ["Europe", "Asia", "Unknown"]
    np.testing.assert_allclose(matrix, [[50, 30, 20], [100, 0, 0], [20, 60, 20]])
    assert totals["all"] == 10
    plot = plot_caption_continents(pd.DataFrame(rows))
    (image,) = plot.figure.axes[0].get_images()
    np.testing.assert_allclose(np.asarray(image.get_array()), matrix)


def test_delta_iou_summary_matches_scipy_and_keeps_the_last_layer():
    rng = np.random.default_rng(3)
    rows = []
    for variant, shift in (("full", -0.05), ("linear", 0.0), ("lora", 0.02)):
        for layer in (2, 3):
            values = rng.normal(shift, 0.05, 25)
            for k, value in enumerate(values):
                rows.append(dict(image_id=f"i{k}", model="vit", variant=variant, method="cls", layer=layer,
                                 head=-1, threshold=25.0, iou_frozen=0.3, iou_tuned=0.3 + value,
                                 delta_iou=value, retention=1 + value / 0.3))
    deltas = pd.DataFrame(rows)
    deltas.loc[0, "delta_iou"] = np.nan  # a NaN image is left out, not propagated (layer 2: unused)
    table = delta_table(deltas, 25.0)
    assert table["variant"].tolist() == ["linear", "lora", "full"] and set(table["layer"]) == {3}
    for _, row in table.iterrows():
        values = deltas[(deltas["variant"] == row["variant"]) & (deltas["layer"] == 3)]["delta_iou"]
        interval = stats.ttest_1samp(values, 0).confidence_interval(0.95)
        assert row["mean"] == pytest.approx(values.mean())
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((interval.low, interval.high))
        assert row["n"] == 25
    plot = plot_delta_iou(deltas, 25.0)
    means = {line.get_gid(): line for line in plot.figure.axes[0].get_lines()
             if line.get_gid() and line.get_marker() == "D"}
    assert means["mean:vit:lora"].get_ydata()[0] == pytest.approx(table.set_index("variant").loc["lora", "mean"])


def test_delta_iou_names_a_strategy_without_spread_in_the_plot_not_as_an_empty_legend_entry():
    rng = np.random.default_rng(5)
    rows = []
    for variant, values in (("linear", np.zeros(20)), ("lora", rng.normal(0.02, 0.05, 20))):
        rows += [dict(image_id=f"i{k}", model="vit", variant=variant, method="cls", layer=3, head=-1,
                      threshold=25.0, iou_frozen=0.3, iou_tuned=0.3 + v, delta_iou=v, retention=1 + v / 0.3)
                 for k, v in enumerate(values)]
    plot = plot_delta_iou(pd.DataFrame(rows), 25.0)
    (legend,) = plot.figure.legends
    assert [text.get_text() for text in legend.get_texts()] == ["lora"]
    ax = plot.figure.axes[0]
    notes = {text.get_gid(): text.get_text() for text in ax.texts}
    assert notes["note:vit:linear"] == "linear: ΔIoU = 0\non all 20 images"
    assert {line.get_gid() for line in ax.get_lines()} >= {"flat:vit:linear", "mean:vit:lora"}


def test_caption_continents_top_row_counts_every_caption_unknown_included():
    # c1 names two entities (one caption, counted once); c4 names none; c5's country is Unknown
    predictions = pd.DataFrame({
        "image_id": ["c1", "c1", "c2", "c3", "c4", "c5"],
        "entity": ["ngo", "brand", "ngo", "brand", "", "ngo"],
        "country_pred": ["FR", "FR", "JP", "DE", "BR", "Unknown"]})
    every = every_caption_distribution(predictions)
    continents = every[every["level"] == "continent"].set_index("place")["count"]
    assert continents.sum() == 5 and continents["Unknown"] == 1 and continents["Europe"] == 2
    study = pd.DataFrame([dict(entity="all", level="continent", place="Europe", count=2, share=0.5),
                          dict(entity="ngo", level="continent", place="Europe", count=1, share=1.0)])
    plot = plot_caption_continents(study, every)
    ax = plot.figure.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[0] == "all captions (n=5)" and labels[1] == "ngo (n=1)"
    (image,) = ax.get_images()
    row = dict(zip(plot.data.columns[1:], np.asarray(image.get_array())[0]))
    assert row["Unknown"] == pytest.approx(20.0) and sum(row.values()) == pytest.approx(100.0)
    # the colour bar's label is whole inside the figure and names its unit
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    FigureCanvasAgg(plot.figure).draw()
    bar = plot.figure.axes[1]
    label = bar.yaxis.label
    assert "%" in label.get_text()
    extent, frame = label.get_window_extent(), plot.figure.bbox
    assert frame.x0 <= extent.x0 and extent.x1 <= frame.x1 and frame.y0 <= extent.y0 and extent.y1 <= frame.y1
