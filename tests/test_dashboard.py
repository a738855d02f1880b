"""The dashboard's encodings and data files, checked against the tables and maps they come from."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pandas as pd
import pytest

from dashboard_support import (MODELS, N_IMAGES, SETTINGS, THRESHOLDS, registered, write_plausibility,
                               write_study)
from encoderlens.attention.methods import read_method
from encoderlens.report.dashboard import build_dashboard
from encoderlens.report.dashboard_encode import (MISSING, b85, b85_decode, dequantise_maps, format_score,
                                                 quantise_maps, score_codes)


def test_b85_round_trip_of_any_length():
    rng = np.random.default_rng(0)
    for length in (0, 1, 3, 4, 5, 1001):
        data = rng.integers(0, 256, length, dtype=np.uint8).tobytes()
        text = b85(data)
        assert '"' not in text and "\\" not in text
        assert len(text) == 5 * math.ceil(length / 4)
        assert b85_decode(text, length) == data


def test_quantised_maps_are_within_half_a_level_of_each_maps_range():
    rng = np.random.default_rng(1)
    maps = rng.gamma(0.3, size=(20, 14, 14)) * rng.uniform(1e-4, 1e3, size=(20, 1, 1))
    codes, ranges = quantise_maps(maps)
    assert codes.dtype == np.uint8 and ranges.dtype == np.float32
    span = maps.max(axis=(1, 2)) - maps.min(axis=(1, 2))
    error = np.abs(dequantise_maps(codes, ranges) - maps).max(axis=(1, 2))
    # half a level, plus float32 rounding of the range itself
    assert (error <= span / 255 / 2 + 1e-6 * maps.max(axis=(1, 2))).all()
    assert (codes.reshape(20, -1).max(axis=1) == 255).all() and (codes.reshape(20, -1).min(axis=1) == 0).all()


def test_quantise_marks_non_finite_maps_and_keeps_constant_ones():
    maps = np.stack([np.full((3, 3), 2.0), np.ones((3, 3))])
    maps[1, 0, 0] = np.nan
    codes, ranges = quantise_maps(maps)
    assert np.isnan(ranges[1]).all() and (codes[1] == 0).all()
    assert ranges[0].tolist() == [2.0, 2.0]
    assert np.allclose(dequantise_maps(codes[:1], ranges[:1]), 2.0)


def test_score_codes_print_exactly_as_python_formats_the_table_value():
    rng = np.random.default_rng(2)
    # random values, every 4-decimal value plus half a step (the rounding edge), and edge cases
    values = np.concatenate([rng.random(5000), np.arange(10001) / 1e4 + 5e-5,
                             [0.0, 1.0, 0.12345, 0.99995, 1 / 3, np.nan]])
    codes = score_codes(values)
    expected = ["n/a" if np.isnan(v) else format(v, ".4f") for v in values]
    assert [format_score(c) for c in codes] == expected
    assert codes[-1] == MISSING
    with pytest.raises(ValueError, match="scores must lie"):
        score_codes([-0.1])
    with pytest.raises(ValueError, match="scores must lie"):
        score_codes([7.0])


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("dashboard")
    layout = write_study(root)
    out = build_dashboard(layout, root / "dashboard", SETTINGS, results=root / "results")
    return root, out


def _decode_entry(entry, n_thresholds):
    """The Python twin of app.js decodeEntry: labels, stored maps, ranges and score codes."""
    n = entry["n"]
    labels = np.frombuffer(b85_decode(entry["slots"], 2 * n), dtype=np.int8).reshape(n, 2)
    layers, heads = labels[:, 0].astype(int), labels[:, 1].astype(int)
    derived = np.array([h < 0 and any(g >= 0 and l2 == l for l2, g in zip(layers, heads))
                        for l, h in zip(layers, heads)])
    gh, gw = entry["grid"]
    stored = int((~derived).sum())
    codes = np.frombuffer(b85_decode(entry["maps"], stored * gh * gw), dtype=np.uint8).reshape(stored, gh, gw)
    ranges = np.frombuffer(b85_decode(entry["ranges"], 8 * stored), dtype="<f4").reshape(stored, 2)
    scores = np.frombuffer(b85_decode(entry["scores"], 2 * n * (n_thresholds + 2)), dtype="<u2")
    return layers, heads, derived, codes, ranges, scores.reshape(n, n_thresholds + 2)


def test_every_score_of_every_image_is_the_alignment_tables_value(site):
    root, out = site
    (index,) = registered(out / "data" / "index.js")
    dataset = index["datasets"][0]
    assert dataset["thresholds"] == THRESHOLDS
    assert [image["id"] for image in dataset["images"]] == [f"img{k}" for k in range(N_IMAGES)]
    checked = 0
    for image in dataset["images"]:
        name, image_id, payload = registered(out / image["data"])
        assert (name, image_id) == ("demo", image["id"])
        assert {(e["model"], e["variant"]) for e in payload["entries"]} == {
            (m, v) for m, variants in MODELS.items() for v in variants}
        for entry in payload["entries"]:
            layers, heads, derived, _, _, scores = _decode_entry(entry, len(THRESHOLDS))
            table = pd.read_parquet(root / "results" / "demo" / entry["model"] / entry["variant"] /
                                    "alignment.parquet")
            rows = table[(table.image_id == image_id) & (table.method == entry["method"])]
            assert len(rows) == len(layers) * len(THRESHOLDS)
            for row in rows.itertuples():
                slot = np.flatnonzero((layers == row.layer) & (heads == row.head))
                assert len(slot) == 1
                k = THRESHOLDS.index(row.threshold)
                shown = [format_score(c) for c in scores[slot[0], [k, -2, -1]]]
                expected = ["n/a" if np.isnan(v) else format(v, ".4f")
                            for v in (row.iou, row.coverage, row.pointing_hit)]
                assert shown == expected
                checked += 1
    assert checked == sum(len(pd.read_parquet(p)) for p in (root / "results" / "demo").glob("*/*/alignment.parquet"))
    # the NaN head of the first image stays unscorable, not zero
    assert "n/a" in {format_score(c) for e in registered(out / dataset["images"][0]["data"])[2]["entries"]
                     for c in _decode_entry(e, len(THRESHOLDS))[5].ravel()}


def test_stored_maps_are_the_attention_files_maps_and_head_means_are_derivable(site):
    root, out = site
    (index,) = registered(out / "data" / "index.js")
    for position, image in enumerate(index["datasets"][0]["images"]):
        _, image_id, payload = registered(out / image["data"])
        for entry in payload["entries"]:
            path = root / "results" / "demo" / entry["model"] / entry["variant"] / "attention.h5"
            with h5py.File(path) as store:
                ids = [i.decode() for i in store["ids"][()]]
                read = read_method(entry["method"], store, ids.index(image_id))
            layers, heads, derived, codes, ranges, _ = _decode_entry(entry, len(THRESHOLDS))
            assert layers.tolist() == read.layer.tolist()
            assert derived.tolist() == [h == "mean" and entry["method"] == "cls" for h in read.head]
            maps = read.maps[0]
            stored = maps[~derived]
            finite = np.isfinite(stored).all(axis=(1, 2))
            decoded = dequantise_maps(codes, ranges)
            span = (ranges[:, 1] - ranges[:, 0]).astype(np.float64)
            assert np.isnan(ranges[~finite]).all()
            assert (np.abs(decoded[finite] - stored[finite]).max(axis=(1, 2)) <= span[finite] / 510 + 1e-6).all()
            for slot in np.flatnonzero(derived):  # head mean = mean of the layer's numbered heads
                siblings = (layers == layers[slot]) & (heads >= 0)
                rebuilt = decoded[np.flatnonzero(siblings[~derived])].mean(axis=0)
                if np.isfinite(maps[slot]).all():
                    assert np.allclose(rebuilt, maps[slot], rtol=0, atol=np.nanmax(span) / 510 + 1e-3 * np.nanmax(span))
                else:
                    assert not np.isfinite(ranges[np.flatnonzero(siblings[~derived])]).all()
        assert (out / image["image"]).exists() and (out / image["thumb"]).exists()


def test_leaderboard_and_feature_tables_are_the_means_of_the_tables(site):
    root, out = site
    (index,) = registered(out / "data" / "index.js")
    dataset = index["datasets"][0]
    board = dataset["leaderboard"]
    assert board["source"] == "computed"

    def expand(table):
        frame = {}
        for name, column in table["columns"].items():
            frame[name] = ([column["levels"][c] for c in column["codes"]] if isinstance(column, dict) else column)
        return pd.DataFrame(frame)

    shown = expand(board["table"])
    tables = [pd.read_parquet(p) for p in sorted((root / "results" / "demo").glob("*/*/alignment.parquet"))]
    tables.append(pd.read_parquet(root / "results" / "demo" / "baselines" / "alignment.parquet"))
    whole = pd.concat(tables)
    whole = whole[whole["head"] == -1]
    expected = whole.groupby(["model", "variant", "method", "layer", "threshold"])["iou"].agg(["mean", "count", "size"])
    iou = shown[shown.metric == "iou"].set_index(["model", "variant", "method", "layer", "threshold"])
    assert len(iou) == len(expected)
    joined = iou.join(expected.rename(columns={"mean": "mean_expected"}))
    assert np.allclose(joined["mean"].astype(float), joined["mean_expected"], atol=1e-6, equal_nan=True)
    assert (joined["n"] == joined["count"]).all()
    assert (joined["n_dropped"] == joined["size"] - joined["count"]).all()
    assert (joined["n_dropped"] > 0).any()  # the NaN head's layer mean is dropped, and counted

    name, model, features = registered(out / "data" / "demo" / "features" / "vit_a.js")
    assert (name, model) == ("demo", "vit_a")
    shown = expand(features).set_index(["variant", "method", "layer", "head", "threshold", "feature"])
    parts = pd.concat([pd.read_parquet(root / "results" / "demo" / "vit_a" / v / "alignment_features.parquet")
                       for v in MODELS["vit_a"]])
    expected = parts.groupby(["variant", "method", "layer", "head", "threshold", "feature"])["iou"].agg(["mean", "count"])
    joined = shown.join(expected)
    assert len(joined) == len(expected)
    assert np.allclose(joined["iou"].astype(float), joined["mean"], atol=1e-5, equal_nan=True)
    assert (joined["n"] == joined["count"]).all()
    assert (out / "data" / "demo" / "features" / "baseline.js").exists()


def test_statistics_summary_is_used_when_present(tmp_path):
    layout = write_study(tmp_path)
    summary = pd.DataFrame({"model": ["vit_a"], "variant": ["frozen"], "method": ["cls"], "layer": [3],
                            "head": [-1], "threshold": [30.0], "metric": ["iou"], "n": [4], "n_dropped": [0],
                            "mean": [0.25], "ci_low": [0.2], "ci_high": [0.3]})
    summary.to_parquet(tmp_path / "summary.parquet")
    layout["annotated"]["demo"]["summary"] = str(tmp_path / "summary.parquet")
    out = build_dashboard(layout, tmp_path / "dashboard", SETTINGS, results=tmp_path / "results")
    (index,) = registered(out / "data" / "index.js")
    board = index["datasets"][0]["leaderboard"]
    assert board["source"] == "statistics"
    assert board["table"]["columns"]["ci_low"] == [0.2] and board["table"]["columns"]["mean"] == [0.25]
    assert index["datasets"][0]["faithfulness"] is None


def test_plausibility_vs_faithfulness_view_holds_each_methods_last_head_mean_map(tmp_path):
    layout = write_plausibility(tmp_path, write_study(tmp_path))
    out = build_dashboard(layout, tmp_path / "dashboard", SETTINGS, results=tmp_path / "results")
    (index,) = registered(out / "data" / "index.js")
    view = index["datasets"][0]["faithfulness"]["columns"]
    expand = lambda column: [column["levels"][c] for c in column["codes"]] if isinstance(column, dict) else column  # noqa: E731
    assert expand(view["method"]) == ["cls", "rollout"] and view["layer"] == [3, -1]
    assert view["iou_mean"] == [0.2, 0.3] and view["iou_ci_low"] == [0.15, 0.25]
    assert view["deletion_mean"] == [0.5, 0.4]
    assert "faithfulnessView" in (out / "assets" / "app.js").read_text()


def test_missing_input_names_the_file_and_leaves_no_partial_site(tmp_path):
    layout = write_study(tmp_path)
    (tmp_path / "results" / "demo" / "cnn_b" / "full" / "alignment.parquet").unlink()
    with pytest.raises(FileNotFoundError, match=r"cnn_b/full/alignment.parquet: missing alignment scores"):
        build_dashboard(layout, tmp_path / "dashboard", SETTINGS, results=tmp_path / "results")
    assert not (tmp_path / "dashboard").exists()
    assert not list(tmp_path.glob(".dashboard*"))


def test_geo_and_caption_tables_travel_as_columns(tmp_path):
    results = tmp_path / "results"
    (results / "streets" / "m" / "frozen").mkdir(parents=True)
    pd.DataFrame({"level": ["country"], "features": ["cls"], "top1": [0.5], "probeable": [True]}).to_parquet(
        results / "streets" / "m" / "probes.parquet")
    pd.DataFrame({"features": ["cls"], "method": ["top1"], "median_km": [123.4]}).to_parquet(
        results / "streets" / "m" / "frozen" / "knn.parquet")
    (results / "caps" / "captions").mkdir(parents=True)
    pd.DataFrame({"entity": ["all", "all"], "level": ["country"] * 2, "place": ["NA", "Unknown"],
                  "count": [3, 1], "share": [0.75, 0.25]}).to_parquet(
        results / "caps" / "captions" / "distributions.parquet")
    out = build_dashboard({"geo": {"streets": ["m"]}, "captions": ["caps"]}, tmp_path / "dashboard",
                          SETTINGS, results=results)
    (index,) = registered(out / "data" / "index.js")
    geo = index["geo"][0]
    assert set(geo["tables"]) == {"probes", "knn"}
    assert geo["tables"]["probes"]["columns"]["model"] == {"levels": ["m"], "codes": [0]}
    assert geo["tables"]["probes"]["columns"]["probeable"] == [1]
    assert geo["tables"]["knn"]["columns"]["median_km"] == [123.4]
    places = index["captions"][0]["distributions"]["columns"]["place"]
    assert places["levels"] == ["NA", "Unknown"]  # Namibia stays Namibia


def _rows(payload) -> pd.DataFrame:
    """A table as `dashboard_encode.columns` sends it, back as a frame (the twin of app.js rowsOf)."""
    data = {name: (column if isinstance(column, list) else [column["levels"][c] for c in column["codes"]])
            for name, column in payload["columns"].items()}
    return pd.DataFrame(data)


def test_datasets_of_earlier_runs_keep_their_pages(tmp_path):
    """A preset run after the demo rebuilds the dashboard for the preset's datasets; the demo's
    datasets, still under results/, keep their pages (read from the files they left)."""
    from dashboard_support import write_geo_and_captions

    write_study(tmp_path, seed=1)
    (tmp_path / "results" / "demo").rename(tmp_path / "results" / "old_demo")
    layout = write_study(tmp_path, seed=2)  # the current config names only "demo"
    write_geo_and_captions(tmp_path / "results")
    out = build_dashboard(layout, tmp_path / "dashboard", SETTINGS, results=tmp_path / "results")
    (index,) = registered(out / "data" / "index.js")
    assert [(d["name"], d["earlier"]) for d in index["datasets"]] == [("demo", False), ("old_demo", True)]
    old = index["datasets"][1]
    assert {m["name"]: m["variants"] for m in old["models"]} == MODELS
    assert old["thresholds"] == THRESHOLDS and old["reference_threshold"] == 30.0
    assert len(old["images"]) == N_IMAGES and all((out / image["data"]).exists() for image in old["images"])
    assert [(g["dataset"], g["earlier"]) for g in index["geo"]] == [("streets", True)]
    assert [(c["dataset"], c["earlier"]) for c in index["captions"]] == [("caps", True)]
    # the same image of the earlier run shows the earlier run's scores
    _, _, payload = registered(out / old["images"][0]["data"])
    table = pd.read_parquet(tmp_path / "results" / "old_demo" / "vit_a" / "frozen" / "alignment.parquet")
    entry = next(e for e in payload["entries"] if (e["model"], e["variant"], e["method"]) == ("vit_a", "frozen", "cls"))
    layers, heads, _, _, _, scores = _decode_entry(entry, len(THRESHOLDS))
    row = table[(table.image_id == "img0") & (table.method == "cls") & (table.layer == 3) & (table["head"] == 0) &
                (table.threshold == 10.0)].iloc[0]
    assert format_score(scores[np.flatnonzero((layers == 3) & (heads == 0))[0], 0]) == format(row.iou, ".4f")

    alone = build_dashboard(layout, tmp_path / "alone", SETTINGS | {"earlier_runs": False}, results=tmp_path / "results")
    (index,) = registered(alone / "data" / "index.js")
    assert [d["name"] for d in index["datasets"]] == ["demo"] and index["geo"] == [] and index["captions"] == []


def test_gallery_scores_and_reference_threshold(site):
    root, out = site
    (index,) = registered(out / "data" / "index.js")
    dataset = index["datasets"][0]
    assert dataset["reference_threshold"] == 30.0  # the middle of 10, 30, 50, as the figures take it
    scores = dataset["gallery_scores"]
    assert scores["keys"] == ["vit_a · frozen · cls", "vit_a · frozen · rollout", "vit_a · lora · cls",
                              "vit_a · lora · rollout", "cnn_b · frozen · gradcam", "cnn_b · full · gradcam"]
    key = scores["keys"].index("vit_a · lora · cls")
    table = pd.read_parquet(root / "results" / "demo" / "vit_a" / "lora" / "alignment.parquet")
    for image, values in zip(dataset["images"], scores["values"]):
        row = table[(table.image_id == image["id"]) & (table.method == "cls") & (table.layer == 3) &
                    (table["head"] == -1) & (table.threshold == 30.0)]
        expected = row["iou"].iloc[0]
        assert values[key] == (None if np.isnan(expected) else round(float(expected), 4))


def test_geo_charts_carry_the_tables_numbers_and_keep_internals_aside(tmp_path):
    from statsmodels.stats.proportion import proportion_confint

    from dashboard_support import write_geo_and_captions

    layout = write_geo_and_captions(tmp_path / "results")
    out = build_dashboard(layout, tmp_path / "dashboard", SETTINGS, results=tmp_path / "results")
    (index,) = registered(out / "data" / "index.js")
    (geo,) = index["geo"]
    charts = geo["charts"]
    assert set(charts) == {"probes", "geoscore", "knn", "geometry_bins", "gallery", "calibration"}
    probes = _rows(charts["probes"])
    assert "city" not in set(probes["level"])  # not probeable: left out of the chart
    assert not {"n_iter", "converged", "stratified"} & set(charts["probes"]["columns"])
    assert {"n_iter", "converged", "stratified"} <= set(geo["tables"]["probes"]["columns"])
    source = pd.read_parquet(tmp_path / "results" / "streets" / "street_b" / "probes.parquet")
    for row in probes[probes["model"] == "street_b"].itertuples():
        own = source[(source.level == row.level) & (source.features == row.features)].iloc[0]
        correct = round(own.top1 * own.n_test)
        low, high = proportion_confint(correct, own.n_test, alpha=0.05, method="wilson")
        assert (row.top1, row.majority_top1) == (round(own.top1, 6), own.majority_top1)
        assert row.ci_low == pytest.approx(low, abs=2e-6) and row.ci_high == pytest.approx(high, abs=2e-6)
    histogram = _rows(charts["geoscore"])
    own = histogram[(histogram.model == "street_a") & (histogram.variant == "distcal") & (histogram.method == "top1")]
    predictions = pd.read_parquet(tmp_path / "results" / "streets" / "street_a" / "distcal" / "knn_predictions.parquet")
    expected, _ = np.histogram(predictions[predictions.method == "top1"]["geoscore"], bins=20, range=(0, 5000))
    assert own["count"].tolist() == expected.tolist() and expected.sum() == 50
    assert set(_rows(charts["calibration"])["model"]) == {"street_a"}
    assert "knn_predictions" not in geo["tables"]  # per query: summarised, not shipped
    (captions,) = index["captions"]
    assert _rows(captions["evaluation"])["subset"].tolist() == ["", "cities", "rural"]
    assert _rows(captions["diversity"])["vendi_caption"].tolist() == [4.0, 1.5]


def test_failures_page_lists_the_depth_studys_failures_with_maps_and_neighbours(tmp_path):
    """The failures of the page's kNN features (and every probe level), each image and neighbour copied,
    each frozen CLS model's failure map the heads mean of its deepest layer, within 8-bit quantisation."""
    from dashboard_support import write_geo_and_captions

    results = tmp_path / "results"
    layout = write_geo_and_captions(results)
    out = build_dashboard(layout, tmp_path / "dashboard", SETTINGS, results=results)
    (index,) = registered(out / "data" / "index.js")
    failures = index["geo"][0]["failures"]
    rows = _rows(failures["table"])
    assert rows["image_id"].tolist() == ["q0", "q1", "q3", "q1", "q2", "q3"]  # the "mean" kNN row is left out
    assert rows["kind"].tolist() == ["knn"] * 4 + ["probe"] * 2
    assert rows["predicted"].tolist() == ["JP", "BR", "ZA", "US", "DE", "Bayern_DE"]
    assert rows["confidence"].iloc[4] == 0.934 and rows["geoscore"].iloc[0] == 7.7
    assert set(failures["images"]) == {"q0", "q1", "q2", "q3", "q4", "q5", "q6", "q7"}
    for image_id, shown in failures["images"].items():
        assert (out / shown["image"]).stat().st_size > 0 and (out / shown["thumb"]).stat().st_size > 0
        # a display copy for the failures themselves; an image only shown as a neighbour: its thumbnail
        assert (shown["image"] == shown["thumb"]) == (image_id not in set(rows["image_id"]))
    # maps: street_a frozen only (street_b has no attention file, distcal none of its own)
    assert set(failures["maps"]) == {"street_a|q0", "street_a|q1", "street_a|q2", "street_a|q3"}
    with h5py.File(results / "streets" / "street_a" / "frozen" / "attention.h5", "r") as store:
        cls = store["cls"][()].astype(np.float64)
    for key, payload in failures["maps"].items():
        expected = cls[int(key.split("|q")[1]), -1].mean(axis=0)
        codes = np.frombuffer(b85_decode(payload["map"], 16), dtype=np.uint8).reshape(payload["grid"])
        lo, hi = payload["range"]
        assert (lo, hi) == pytest.approx((expected.min(), expected.max()), rel=1e-6)
        np.testing.assert_allclose(lo + codes * (hi - lo) / 255, expected, atol=(hi - lo) / 510 + 1e-9)
