"""Alignment figures: the marks drawn are the numbers of the tables, in the order and places claimed."""

from xml.etree import ElementTree

import h5py
import numpy as np
import pandas as pd
import pytest
from matplotlib.container import ErrorbarContainer
from matplotlib.image import AxesImage
from matplotlib.patches import Rectangle
from PIL import Image

from encoderlens.alignment.resize import upsample
from encoderlens.report.figures import Plot, reference_threshold, save_plot
from encoderlens.report.figures_alignment import (chosen_layers, leaderboard_table, plot_iou_by_layer,
                                                  plot_leaderboard, plot_threshold_sensitivity)
from encoderlens.report.figures_heads import head_feature_table, plot_head_feature
from encoderlens.report.figures_overlays import (attention_grid, exemplars, overlay_method,
                                                 plot_attention_overlays)

THRESHOLDS = (10.0, 25.0, 50.0)


def summary_rows(model, variant, method, layer, iou_by_threshold, coverage, hit, n=30):
    rows = []
    for threshold, mean in zip(THRESHOLDS, iou_by_threshold):
        rows.append(dict(model=model, variant=variant, method=method, layer=layer, head=-1,
                         threshold=threshold, metric="iou", n=n, n_dropped=0, mean=mean,
                         ci_low=mean - 0.02, ci_high=mean + 0.03))
        for metric, value in (("coverage", coverage), ("pointing_hit", hit)):
            rows.append(dict(model=model, variant=variant, method=method, layer=layer, head=-1,
                             threshold=threshold, metric=metric, n=n, n_dropped=0, mean=value,
                             ci_low=value - 0.05, ci_high=value + 0.04))
    return rows


@pytest.fixture
def summary():
    rows = []
    # vit: CLS at layers 0-3; the last layer is not the best one
    for layer, base in zip(range(4), (0.10, 0.20, 0.40, 0.30)):
        rows += summary_rows("vit", "frozen", "cls", layer, (base - 0.05, base, base + 0.05), 0.5, 0.6)
    rows += summary_rows("vit", "frozen", "rollout", -1, (0.15, 0.22, 0.28), 0.4, 0.5)
    rows += summary_rows("vit", "lora", "cls", 3, (0.31, 0.35, 0.39), 0.55, 0.7)
    rows += summary_rows("cnn", "frozen", "gradcam", -1, (0.18, 0.25, 0.33), 0.45, 0.55)
    rows += summary_rows("baseline", "", "random", -1, (0.05, 0.08, 0.12), 0.1, 0.2)
    rows += summary_rows("baseline", "", "gaussian", -1, (0.09, 0.12, 0.2), 0.2, 0.4)
    table = pd.DataFrame(rows)
    # a per-head row must never enter the head-mean figures
    extra = table[(table["model"] == "vit") & (table["method"] == "cls") & (table["layer"] == 3)].copy()
    extra["head"], extra["mean"] = 0, 0.99
    return pd.concat([table, extra], ignore_index=True)


def test_reference_threshold_is_the_middle_one_or_the_chosen_one():
    assert reference_threshold([10, 15, 20, 25, 30, 40, 50]) == 25
    assert reference_threshold([50, 10]) == 10
    assert reference_threshold([10, 30], 30) == 30
    with pytest.raises(ValueError, match="not one of"):
        reference_threshold([10, 30], 20)


def test_chosen_layer_is_the_last_or_the_best(summary):
    last = chosen_layers(summary, 25.0, "last").set_index(["model", "variant", "method"])["layer"]
    best = chosen_layers(summary, 25.0, "best").set_index(["model", "variant", "method"])["layer"]
    assert last[("vit", "frozen", "cls")] == 3 and best[("vit", "frozen", "cls")] == 2
    assert last[("vit", "frozen", "rollout")] == best[("vit", "frozen", "rollout")] == -1
    assert last[("baseline", "", "random")] == -1


def test_leaderboard_table_ranks_by_mean_iou_at_the_reference_threshold(summary):
    board = leaderboard_table(summary, 25.0, "last")
    assert board["label"].tolist() == ["vit · cls L3 [lora]", "vit · cls L3", "cnn · gradcam",
                                       "vit · rollout", "baseline · gaussian", "baseline · random"]
    assert board["iou_mean"].tolist() == pytest.approx([0.35, 0.30, 0.25, 0.22, 0.12, 0.08])
    assert board["rank"].tolist() == [1, 2, 3, 4, 5, 6]
    assert board.loc[1, "coverage_mean"] == pytest.approx(0.5)
    assert board.loc[1, "pointing_hit_ci_high"] == pytest.approx(0.64)
    best = leaderboard_table(summary, 25.0, "best")
    assert best.loc[0, "label"] == "vit · cls L2" and best.loc[0, "iou_mean"] == pytest.approx(0.40)


def _bars_and_cis(ax):
    bars = {p.get_gid()[4:]: p for p in ax.patches if isinstance(p, Rectangle) and (p.get_gid() or "").startswith("bar:")}
    cis = {}
    for container in ax.containers:
        if isinstance(container, ErrorbarContainer):
            (segment,) = container.lines[2][0].get_segments()
            cis[round(float(segment[0][1]), 6)] = (float(segment[0][0]), float(segment[1][0]))
    return bars, cis


def test_leaderboard_figure_draws_the_table_top_down_with_its_intervals(summary):
    plot = plot_leaderboard(summary, 25.0, "last")
    board = plot.data
    iou_axis = plot.figure.axes[0]
    ticks = sorted(zip(iou_axis.get_yticks(), [t.get_text() for t in iou_axis.get_yticklabels()]),
                   reverse=True)
    assert [label for _, label in ticks] == board["label"].tolist()
    bars, cis = _bars_and_cis(iou_axis)
    for _, row in board.iterrows():
        bar = bars[row["label"]]
        assert bar.get_width() == pytest.approx(row["iou_mean"])
        low, high = cis[round(bar.get_y() + bar.get_height() / 2, 6)]
        assert (low, high) == pytest.approx((row["iou_ci_low"], row["iou_ci_high"]))
    coverage_bars, _ = _bars_and_cis(plot.figure.axes[1])
    assert coverage_bars["cnn · gradcam"].get_width() == pytest.approx(0.45)
    assert "25% of the attention mass" in plot.caption


def test_iou_by_layer_draws_each_layered_method_and_the_baselines(summary):
    plot = plot_iou_by_layer(summary, 25.0)
    ax = plot.figure.axes[0]
    lines = {line.get_gid(): line for line in ax.get_lines() if line.get_gid()}
    frozen = lines["line:vit · cls"]
    assert list(frozen.get_xdata()) == [0, 1, 2, 3]
    assert list(frozen.get_ydata()) == pytest.approx([0.10, 0.20, 0.40, 0.30])  # head 0's 0.99 left out
    assert "line:vit · rollout" not in lines and "line:cnn · gradcam" not in lines  # one layer only
    assert lines["baseline:gaussian"].get_ydata()[0] == pytest.approx(0.12)
    assert set(plot.data["head"]) == {-1}


def test_threshold_sensitivity_panel_follows_the_threshold(summary):
    plot = plot_threshold_sensitivity(summary, 25.0, "last")
    panels = {ax.get_title(): ax for ax in plot.figure.axes if ax.get_visible() and ax.get_title()}
    assert set(panels) == {"vit", "cnn"}
    lines = {line.get_gid(): line for line in panels["vit"].get_lines() if line.get_gid()}
    cls = lines["line:vit:cls L3"]
    assert list(cls.get_xdata()) == list(THRESHOLDS)
    assert list(cls.get_ydata()) == pytest.approx([0.25, 0.30, 0.35])
    assert list(lines["line:vit:cls L3 [lora]"].get_ydata()) == pytest.approx([0.31, 0.35, 0.39])


def features_table():
    rng = np.random.default_rng(0)
    rows = []
    for image in range(6):
        for feature in ("portal", "window"):
            for layer in (0, 1):
                for head in (-1, 0, 1, 2):
                    for threshold in (25.0, 50.0):
                        rows.append(dict(image_id=f"img{image}", feature=feature, model="vit", variant="frozen",
                                         method="cls", layer=layer, head=head, threshold=threshold,
                                         iou=float(rng.uniform()), coverage=0.5, pointing_hit=1.0,
                                         scorable=True))
    table = pd.DataFrame(rows)
    table.loc[(table["image_id"] == "img0") & (table["feature"] == "window"), "scorable"] = False
    table.loc[~table["scorable"], "iou"] = np.nan
    return table


def test_head_feature_cells_are_mean_iou_of_scorable_images_at_the_last_layer():
    table = features_table()
    cells = head_feature_table(table, 25.0, "last")
    assert set(cells["layer"]) == {1} and set(cells["head"]) == {0, 1, 2}
    used = table[(table["layer"] == 1) & (table["threshold"] == 25.0) & (table["head"] >= 0) & table["scorable"]]
    want = used.groupby(["head", "feature"])["iou"].mean()
    got = cells.set_index(["head", "feature"])["mean_iou"]
    pd.testing.assert_series_equal(got.sort_index(), want.sort_index(), check_names=False)
    assert cells.set_index(["head", "feature"]).loc[(0, "window"), "n"] == 5

    plot = plot_head_feature(table, 25.0, "last")
    (image,) = [a for ax in plot.figure.axes for a in ax.get_images() if isinstance(a, AxesImage)]
    expected = want.unstack("feature").sort_index().to_numpy()
    np.testing.assert_allclose(np.asarray(image.get_array()), expected)


def test_head_feature_best_layer_uses_the_head_mean():
    table = features_table()
    table.loc[(table["layer"] == 0) & (table["head"] == -1), "iou"] += 5  # layer 0 wins on the head mean
    assert set(head_feature_table(table, 25.0, "best")["layer"]) == {0}


# ---- overlays ----------------------------------------------------------------------------------
@pytest.fixture
def overlay_inputs(tmp_path):
    """Three non-square images, an attention file whose head mean at layer 5 differs from layer 4."""
    rng = np.random.default_rng(1)
    ids = ["a", "b", "c"]
    (tmp_path / "images").mkdir()
    for image_id in ids:
        pixels = rng.integers(0, 255, size=(100, 200, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / "images" / f"{image_id}.png")
    cls = rng.uniform(size=(3, 2, 3, 4, 4)).astype(np.float16)
    with h5py.File(tmp_path / "attention.h5", "w") as handle:
        handle["ids"] = np.array(ids, dtype=h5py.string_dtype())
        handle["cls"] = cls
        handle["layers"] = np.array([4, 5])
        handle["rollout"] = rng.uniform(size=(3, 4, 4)).astype(np.float16)
    manifest = pd.DataFrame({"image_id": ids, "path": [f"images/{i}.png" for i in ids], "split": "annotated"})
    annotations = pd.DataFrame({"image_id": ["a", "b", "b", "c"], "box_id": [0, 0, 1, 0],
                                "feature": ["portal", "portal", "window", "window"],
                                "left": [0.1, 0.25, 0.6, 0.0], "top": [0.2, 0.5, 0.1, 0.0],
                                "width": [0.3, 0.2, 0.1, 1.0], "height": [0.5, 0.4, 0.3, 1.0],
                                "clamped": False})
    rows = []
    for image_id, iou in zip(ids, (0.5, 0.1, 0.3)):
        for layer in (4, 5):
            for head in (-1, 0):
                rows.append(dict(image_id=image_id, model="vit", variant="frozen", method="cls", layer=layer,
                                 head=head, threshold=25.0, iou=iou + 0.01 * layer + 0.2 * (head + 1),
                                 coverage=0.5, pointing_hit=1.0, scorable=True))
        rows.append(dict(image_id=image_id, model="vit", variant="frozen", method="rollout", layer=-1, head=-1,
                         threshold=25.0, iou=0.9, coverage=0.5, pointing_hit=1.0, scorable=True))
    alignment = pd.DataFrame(rows)
    return tmp_path, cls, manifest, annotations, alignment


def test_exemplars_are_best_median_worst_of_the_chosen_map(overlay_inputs):
    _, _, _, _, alignment = overlay_inputs
    method, layer = overlay_method(alignment, ("cls", "rollout"), "last", 25.0)
    assert (method, layer) == ("cls", 5)
    picked = exemplars(alignment, method, layer, 25.0).set_index("rank")
    assert picked.loc["best", "image_id"] == "a" and picked.loc["best", "iou"] == pytest.approx(0.55)
    assert picked.loc["median", "image_id"] == "c" and picked.loc["worst", "image_id"] == "b"
    # ties go by image id, so the choice is reproducible; the lower middle for an even count
    tied = alignment.assign(iou=0.3)
    assert exemplars(tied, "cls", 5, 25.0).set_index("rank").loc["worst", "image_id"] == "a"
    assert exemplars(tied[tied["image_id"] != "c"], "cls", 5, 25.0).set_index("rank").loc["median", "image_id"] == "a"
    assert overlay_method(alignment, ("rollout", "cls"))[0] == "rollout"


def test_overlay_draws_the_head_mean_map_and_the_boxes_at_their_pixels(overlay_inputs):
    root, cls, manifest, annotations, alignment = overlay_inputs
    with h5py.File(root / "attention.h5") as store:
        np.testing.assert_allclose(attention_grid(store, "b", "cls", 5),
                                   cls[1, 1].astype(np.float32).mean(axis=0), rtol=1e-6)
    picked = exemplars(alignment, "cls", 5, 25.0)
    plot = plot_attention_overlays(picked, {"vit": str(root / "attention.h5")}, manifest, annotations, 25.0,
                                   root=root)
    panels = [ax for ax in plot.figure.axes if ax.get_visible()]
    assert [ax.get_title().split(":")[0] for ax in panels] == ["best", "median", "worst"]
    worst = panels[2]  # image b: two boxes, 200 x 100 pixels
    boxes = sorted((p.get_x(), p.get_y(), p.get_width(), p.get_height())
                   for p in worst.patches if p.get_gid() == "expert_box")
    np.testing.assert_allclose(boxes, [(50.0, 50.0, 40.0, 40.0), (120.0, 10.0, 20.0, 30.0)])
    attention = [im for im in worst.get_images() if im.get_gid() == "attention"][0]
    assert attention.get_extent() == [0, 200, 100, 0]
    shown = upsample(cls[1, 1].astype(np.float32).mean(axis=0)[None], (100, 200))[0].astype(np.float64)
    expected = (shown - shown.min()) / (shown.max() - shown.min())
    np.testing.assert_allclose(np.asarray(attention.get_array()), expected, atol=1e-6)
    assert "IoU 0.15" in worst.get_title()  # the head mean's IoU; head 0 scored 0.35


def test_save_plot_writes_every_file(tmp_path, summary):
    plot = plot_leaderboard(summary, 25.0)
    paths = [tmp_path / f"f.{ext}" for ext in ("png", "svg", "csv", "txt")]
    save_plot(plot, *paths, dpi=60)
    with Image.open(paths[0]) as png:
        assert png.format == "PNG"
        assert png.size == tuple(round(60 * x) for x in plot.figure.get_size_inches())
    svg = ElementTree.parse(paths[1]).getroot()
    texts = "".join(svg.itertext())
    assert "mean IoU at 25% mass" in texts  # text stays text: editable for publication
    written = pd.read_csv(paths[2], keep_default_na=False)
    assert written["label"].tolist() == plot.data["label"].tolist()
    np.testing.assert_allclose(written["iou_mean"], plot.data["iou_mean"])
    assert paths[3].read_text().strip() == plot.caption.strip()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left
    assert isinstance(plot, Plot)


def _legend_covers_no_panel(figure):
    """Whether the figure's one legend lies outside every panel (drawn, in display pixels)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure).draw()
    (legend,) = figure.legends
    extent = legend.get_window_extent()
    return all(ax.get_legend() is None and not extent.overlaps(ax.get_window_extent())
               for ax in figure.axes if ax.get_visible())


def test_iou_by_layer_is_one_panel_per_model_with_legends_off_the_lines(summary):
    second = summary[(summary["model"] == "vit") & (summary["method"] == "cls")].copy()
    second["model"], second["mean"] = "vit2", second["mean"] + 0.01  # bands that would overlap in one panel
    plot = plot_iou_by_layer(pd.concat([summary, second], ignore_index=True), 25.0)
    panels = {ax.get_title(): ax for ax in plot.figure.axes if ax.get_visible() and ax.get_title()}
    assert set(panels) == {"vit", "vit2"}
    for model, ax in panels.items():
        own = {line.get_gid() for line in ax.get_lines() if (line.get_gid() or "").startswith("line:")}
        assert own == {f"line:{model} · cls", f"line:{model} · cls [lora]"} - (
            {f"line:{model} · cls [lora]"})  # lora is stored at one layer only
        assert {line.get_gid() for line in ax.get_lines() if (line.get_gid() or "").startswith("baseline:")} == {
            "baseline:gaussian", "baseline:random"}
    assert _legend_covers_no_panel(plot.figure)
    labels = [text.get_text() for text in plot.figure.legends[0].get_texts()]
    assert labels == ["cls", "baseline · gaussian", "baseline · random"]  # each once, for both panels


def test_threshold_sensitivity_legend_covers_no_data(summary):
    plot = plot_threshold_sensitivity(summary, 25.0, "last")
    assert _legend_covers_no_panel(plot.figure)
    labels = [text.get_text() for text in plot.figure.legends[0].get_texts()]
    assert sorted(labels[:4]) == ["cls", "cls [lora]", "gradcam", "rollout"] and len(set(labels)) == len(labels)


def test_leaderboard_legend_explains_the_hatching(summary):
    plot = plot_leaderboard(summary, 25.0, "last")
    (legend,) = plot.figure.legends
    hatches = {text.get_text(): handle.get_hatch() for text, handle in zip(legend.get_texts(), legend.legend_handles)}
    bars, _ = _bars_and_cis(plot.figure.axes[0])
    # each method's legend patch has the hatch of its bars; the baselines' pattern is named once
    assert hatches["rollout"] == bars["vit · rollout"].get_hatch()
    assert hatches["gradcam"] == bars["cnn · gradcam"].get_hatch() and hatches["gradcam"] != hatches["rollout"]
    assert hatches["baseline (random, Gaussian, Sobel)"] == bars["baseline · random"].get_hatch()
    assert "random" not in hatches and "gaussian" not in hatches


def test_entries_on_few_images_are_marked_in_the_figures_and_captions(summary):
    # issue 21 item 7: the cnn's scores rest on 3 images, flagged small_n by the statistics
    flagged = summary.assign(small_n=summary["model"] == "cnn")
    flagged.loc[flagged["model"] == "cnn", "n"] = 3
    plot = plot_leaderboard(flagged, 25.0, "last", min_n=10)
    board = plot.data.set_index("model")
    assert board.loc["cnn", "label"] == "cnn · gradcam \u2020" and board.loc["cnn", "small_n"]
    assert board["small_n"].sum() == 1
    assert "Caution: 1 of 6 entries rest on fewer than 10 images (stats.min_n)" in plot.caption
    layers = plot_iou_by_layer(flagged, 25.0, min_n=10)
    assert not layers.data["small_n"].any() and "Caution" not in layers.caption  # the cnn has one layer
    thresholds = plot_threshold_sensitivity(flagged, 25.0, "last", min_n=10)
    assert thresholds.data["small_n"].sum() == 3  # the cnn's three thresholds
    assert "Caution: 3 of 18 plotted points rest on fewer than 10 images" in thresholds.caption
    # a summary without the flag (written before it existed) draws as before, without a caution
    assert "Caution" not in plot_leaderboard(summary, 25.0, "last", min_n=10).caption
