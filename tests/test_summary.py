"""Headline tables and the run's summary: rows selected from the study outputs, numbers unchanged."""

import json
import re

import numpy as np
import pandas as pd
import pytest

from encoderlens.report.summary import (STUDIES, format_value, read_indexes, read_table_csv, study_tables,
                                        summary_html, summary_markdown, write_study_tables)
from encoderlens.stats import MODEL_COMPARISON_COLUMNS, VARIANT_COMPARISON_COLUMNS

THRESHOLDS = (10.0, 25.0, 50.0)


def _summary():
    rows = []
    for model, variant, method, layer, base in (("m1", "frozen", "cls", 3, 0.40), ("m1", "frozen", "cls", 2, 0.50),
                                                ("m2", "frozen", "rollout", -1, 0.30),
                                                ("baseline", "", "random", -1, 0.1234567)):
        for t, shift in zip(THRESHOLDS, (-0.1, 0.0, 0.1)):
            for metric in ("iou", "coverage", "pointing_hit"):
                mean = base + shift + (0.01 if metric != "iou" else 0)
                rows.append(dict(model=model, variant=variant, method=method, layer=layer, head=-1, threshold=t,
                                 metric=metric, n=20, n_dropped=0, mean=mean, ci_low=mean - 0.0312345,
                                 ci_high=mean + 0.0287654))
    return pd.DataFrame(rows)


def _comparisons(columns, rows):
    table = pd.DataFrame(rows)
    for column in columns:
        if column not in table:
            table[column] = np.nan if column not in ("note", "family", "kind", "scope") else ""
    return table[columns]


@pytest.fixture
def alignment_inputs(tmp_path):
    stats = tmp_path / "results/stats/demo"
    stats.mkdir(parents=True)
    _summary().to_parquet(stats / "alignment_summary.parquet")
    base = dict(kind="model", variant="frozen", scope="primary", layer_choice="last", metric="iou", threshold=25.0,
                method_a="cls", layer_a=3, method_b="rollout", layer_b=-1, n_pairs=20, family_size=2)
    models = _comparisons(MODEL_COMPARISON_COLUMNS + ["n_below_minimum"], [
        base | dict(model_a="m1", model_b="m2", mean_diff=0.1, cohens_dz=0.91234, p_ttest_holm=0.004,
                    reject_ttest=True, n_below_minimum=False),
        base | dict(model_a="m1", model_b="baseline", mean_diff=0.01, cohens_dz=0.1, p_ttest_holm=0.6,
                    reject_ttest=False, n_below_minimum=False),
        # significant, but at another threshold / through another scope: not a headline row
        base | dict(model_a="m2", model_b="baseline", threshold=10.0, cohens_dz=2.0, p_ttest_holm=0.001,
                    reject_ttest=True, n_below_minimum=False),
        base | dict(model_a="m2", model_b="baseline", scope="rollout", cohens_dz=2.0, p_ttest_holm=0.001,
                    reject_ttest=True, n_below_minimum=False)])
    models.to_parquet(stats / "model_comparisons.parquet")
    variants = _comparisons(VARIANT_COMPARISON_COLUMNS, [
        dict(model="m1", scope="primary", method="cls", layer_choice="last", layer=3, metric="iou", threshold=25.0,
             variant="lora", reference="frozen", n_pairs=20, mean_diff=-0.05, diff_ci_low=-0.08, diff_ci_high=-0.02,
             cohens_dz=-0.7, p_ttest_holm=0.01, reject_ttest=True)])
    variants.to_parquet(stats / "variant_comparisons.parquet")
    pd.DataFrame([dict(model="m1", variant="frozen", method="cls", layer=l, head=h, threshold=t, n_features=3,
                       specialisation=0.1 * l + 0.01 * h, max_share=0.5, preferred_feature="tower")
                  for l in (2, 3) for h in (0, 1) for t in THRESHOLDS]).to_parquet(stats / "head_specialisation.parquet")
    return {name: str(stats / f"{file}.parquet") for name, file in (
        ("summary", "alignment_summary"), ("models", "model_comparisons"), ("variants", "variant_comparisons"),
        ("specialisation", "head_specialisation"))}


SETTINGS = {"dataset": "demo", "threshold": 25.0, "layer_rule": "last", "alpha": 0.05}


def test_alignment_tables_select_rows_and_keep_the_parquet_numbers(alignment_inputs):
    tables = study_tables("alignment", alignment_inputs, SETTINGS)
    assert set(tables) == set(STUDIES["alignment"].tables)
    board = tables["leaderboard"].frame
    assert list(board.columns[:3]) == ["dataset", "model", "variant"]
    assert "threshold_pct" in board.columns and "threshold" not in board.columns
    assert board["rank"].tolist() == [1, 2, 3]
    first = board.iloc[0]
    # m1's last layer (3), not its better layer 2; the value is the parquet's, to the last bit
    assert (first["model"], first["layer"], first["head"]) == ("m1", 3, -1)
    summary = pd.read_parquet(alignment_inputs["summary"])
    row = summary[(summary["model"] == "m1") & (summary["layer"] == 3) & (summary["threshold"] == 25.0)
                  & (summary["metric"] == "iou")].iloc[0]
    assert first["iou_mean"] == row["mean"] and first["iou_ci_low"] == row["ci_low"]
    assert board.iloc[2]["model"] == "baseline"
    comparisons = tables["model_comparisons"].frame
    assert comparisons[["model", "versus_model"]].values.tolist() == [["m1", "m2"]]  # Holm survivors only
    assert comparisons["n_below_minimum"].tolist() == [False]  # a flag column travels
    assert tables["variant_comparisons"].frame["variant"].tolist() == ["lora"]
    heads = tables["head_specialisation"].frame
    assert heads[["layer", "head", "threshold_pct"]].values.tolist() == [[3, 1, 25.0]]


def test_csv_copies_and_summary_show_the_same_numbers(alignment_inputs, tmp_path):
    tables = study_tables("alignment", alignment_inputs, SETTINGS)
    outputs = {name: {"csv": tmp_path / f"tables/{name}.csv", "html": tmp_path / f"tables/{name}.html"}
               for name in STUDIES["alignment"].tables}
    index = tmp_path / "tables/alignment.json"
    write_study_tables("alignment", "demo", tables, outputs, index)
    board = read_table_csv(outputs["leaderboard"]["csv"])
    np.testing.assert_array_equal(board["iou_mean"], tables["leaderboard"].frame["iou_mean"])  # exact round trip
    assert board["source"].unique().tolist() == [alignment_inputs["summary"]]
    assert board["figure"].unique().tolist() == ["results/figures/demo/leaderboard.png"]
    markdown = summary_markdown(read_indexes([index]))
    # every leaderboard row appears with the parquet's mean IoU and CI to four significant digits
    for _, row in board.iterrows():
        line = next(l for l in markdown.splitlines() if l.startswith(f"| {row['rank']} | {row['model']} |"))
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[5:8] == [format_value(row[c]) for c in ("iou_mean", "iou_ci_low", "iou_ci_high")]
    assert "| 3 | baseline |  | random | -1 | 0.1235 | 0.09222 | 0.1522 | 20 |" in markdown
    assert "0.9123" in markdown and "n_below_minimum" in markdown
    assert "alignment_summary.parquet" in markdown and "leaderboard.png" in markdown
    html = summary_html(read_indexes([index]))
    assert "0.1235" in html and "<h2>demo</h2>" in html
    page = outputs["model_comparisons"]["html"].read_text()
    assert "Holm" in page and "0.9123" in page


def test_summary_lists_only_the_studies_that_ran(tmp_path):
    folder = tmp_path / "results/demo_captions/captions"
    folder.mkdir(parents=True)
    pd.DataFrame({"scope": ["overall", "subset"], "subset": ["", "web"], "n": [10, 4], "correct": [7, 2],
                  "accuracy": [0.7, 0.5], "ci_low": [0.397, 0.15], "ci_high": [0.892, 0.85],
                  "n_unknown": [2, 1]}).to_parquet(folder / "evaluation.parquet")
    # "NA" is Namibia, not a missing value; Unknown: 3 of the 12 captions of "all"
    pd.DataFrame({"entity": ["all", "all", "all", "pope"], "level": ["country"] * 4,
                  "place": ["NA", "AR", "Unknown", "NA"], "count": [5, 4, 3, 2],
                  "share": [5 / 12, 4 / 12, 3 / 12, 1.0]}).to_parquet(folder / "distributions.parquet")
    pd.DataFrame({"entity": ["all"], "country": ["NA"], "n": [5], "vendi_image": [1.5],
                  "vendi_caption": [2.25]}).to_parquet(folder / "diversity.parquet")
    inputs = {name: str(folder / f"{name}.parquet") for name in ("evaluation", "distributions", "diversity")}
    tables = study_tables("captions", inputs, {"dataset": "demo_captions"})
    unknown = tables["caption_unknown"].frame.set_index("entity")
    assert unknown.loc["all", "n_captions"] == 12 and unknown.loc["all", "n_unknown"] == 3
    assert unknown.loc["all", "unknown_share"] == 3 / 12 and unknown.loc["pope", "unknown_share"] == 0.0
    outputs = {name: {"csv": tmp_path / f"t/{name}.csv", "html": tmp_path / f"t/{name}.html"} for name in tables}
    write_study_tables("captions", "demo_captions", tables, outputs, tmp_path / "t/captions.json")
    assert read_table_csv(outputs["caption_diversity"]["csv"])["country"].tolist() == ["NA"]
    markdown = summary_markdown(read_indexes([tmp_path / "t/captions.json"]))
    assert "## demo_captions" in markdown and "(captions)" in markdown
    assert "alignment" not in markdown.lower().split("## demo_captions")[1]  # no study that did not run
    assert "| overall |  | 10 | 7 | 0.7 | 0.397 | 0.892 | 2 |" in markdown
    index = json.loads((tmp_path / "t/captions.json").read_text())
    assert [t["name"] for t in index["tables"]] == ["caption_accuracy", "caption_unknown", "caption_diversity"]


def test_geo_tables_name_model_and_variant_and_spell_sub_region(tmp_path):
    root = tmp_path / "results/streets"
    for model in ("a", "b"):
        (root / model / "frozen").mkdir(parents=True)
        pd.DataFrame({"level": ["country", "sub-region"], "features": ["cls", "cls"], "n_test": [30, 30],
                      "top1": [0.5, 0.2], "majority_top1": [0.3, 0.1], "probeable": [True, True]}
                     ).to_parquet(root / model / "probes.parquet")
        pd.DataFrame({"features": ["cls"], "method": ["top1"], "n": [30], "geoscore": [1234.5], "median_km": [812.25],
                      "sub-region_accuracy": [0.1]}).to_parquet(root / model / "frozen/knn.parquet")
    inputs = {"probes": [str(root / m / "probes.parquet") for m in ("a", "b")],
              "knn": [str(root / m / "frozen/knn.parquet") for m in ("a", "b")]}
    tables = study_tables("geo", inputs, {"dataset": "streets"})
    probes, knn = tables["probes"].frame, tables["knn"].frame
    assert probes["model"].tolist() == ["a", "a", "b", "b"] and set(probes["variant"]) == {"frozen"}
    assert probes["level"].tolist()[:2] == ["country", "sub_region"]
    assert "sub_region_accuracy" in knn.columns and knn["median_km"].tolist() == [812.25, 812.25]
    assert knn["source"].tolist() == inputs["knn"]


def test_a_table_the_study_does_not_make_is_an_error(alignment_inputs, tmp_path):
    tables = study_tables("alignment", alignment_inputs, SETTINGS)
    with pytest.raises(ValueError, match="no tables.*'probes'"):
        write_study_tables("alignment", "demo", tables, {"probes": {"csv": tmp_path / "p.csv",
                                                                   "html": tmp_path / "p.html"}}, tmp_path / "i.json")
    with pytest.raises(ValueError, match="unknown study"):
        study_tables("nope", {}, {})


def test_geo_depth_and_planted_tables_copy_the_study_values(tmp_path):
    from encoderlens.geo.depth import model_pairs

    rng = np.random.default_rng(0)
    ids = [f"q{i}" for i in range(40)]
    answers = {m: pd.DataFrame({"image_id": ids, "geoscore": rng.uniform(0, 5000, 40), "correct": rng.random(40) < 0.5})
               for m in ("a", "b")}
    pairs = model_pairs(answers, n_resamples=200)
    pairs.to_parquet(tmp_path / "model_comparisons.parquet")
    regional = pd.DataFrame({"attribute": ["continent", "continent", "country"], "metric": ["geoscore", "entropy", "geoscore"],
                             "group": ["Europe", "Europe", "FR"], "n": [10, 10, 10], "share": [1.0, 1.0, 1.0],
                             "mean": [1234.5, 0.3, 1234.5], "ci_low": [1000.0, 0.2, 1000.0], "ci_high": [1500.0, 0.4, 1500.0],
                             "below_min_n": False, "p_kruskal": np.nan, "model": "a", "variant": "frozen",
                             "centroid_latitude": [np.nan, np.nan, 46.0], "centroid_longitude": [np.nan, np.nan, 2.0]})
    regional.to_parquet(tmp_path / "regional.parquet")
    planted = pd.DataFrame({"model": ["a"], "check": ["knn_above_shuffled_gallery"], "observed": [3000.0],
                            "reference": [600.0], "n": [48], "recovered": [True], "note": [""]})
    planted.to_parquet(tmp_path / "planted.parquet")
    failures = pd.DataFrame({"kind": ["knn"] * 4 + ["probe"] * 5, "model": "a", "variant": "frozen",
                             "features": ["cls"] * 3 + ["mean"] + ["cls"] * 4 + ["mean"],
                             "method": ["top1"] * 4 + ["probe"] * 5,
                             "level": [None] * 4 + ["country"] * 3 + ["region", "country"],
                             "rank": [1, 2, 4, 1, 1, 2, 3, 1, 1], "image_id": [f"q{i}" for i in range(9)],
                             "true_country": "FR", "pred_country": "JP", "true_label": [None] * 4 + ["FR"] * 5,
                             "pred_label": [None] * 4 + ["DE", "JP", "ES", "X_DE", "IT"],
                             "confidence": [np.nan] * 4 + [0.9, 0.8, 0.7, 0.6, 0.5],
                             "distance_km": 800.0, "geoscore": [12.0, 15.0, 20.0, 30.0] + [np.nan] * 5,
                             "neighbours": "q7 q8"})
    failures.to_parquet(tmp_path / "failures.parquet")
    settings = {"dataset": "streets", "alpha": 0.05}
    depth = study_tables("geo_depth", {"model_comparisons": tmp_path / "model_comparisons.parquet",
                                       "regional": tmp_path / "regional.parquet",
                                       "failures": tmp_path / "failures.parquet"}, settings)
    assert set(depth) == set(STUDIES["geo_depth"].tables)
    copied = depth["geo_model_pairs"].frame
    assert copied["difference"].tolist() == pairs["difference"].tolist()
    assert copied["p_holm"].tolist() == pairs["p_holm"].tolist()
    continents = depth["regional_continents"].frame
    assert continents["group"].tolist() == ["Europe"] and continents["mean"].tolist() == [1234.5]
    assert list(continents.columns[:3]) == ["dataset", "model", "variant"]
    # the three worst kNN queries (first features, top-1) and most confident country-probe errors
    shown = depth["geo_failures"].frame
    assert shown["image_id"].tolist() == ["q0", "q1", "q4", "q5", "q6"]
    assert shown["predicted"].tolist() == ["JP", "JP", "DE", "JP", "ES"]
    assert shown["true"].tolist() == ["FR"] * 5 and shown["confidence"].iloc[2] == 0.9
    checks = study_tables("planted", {"planted": tmp_path / "planted.parquet"}, settings)["planted"].frame
    assert checks[["observed", "reference", "recovered"]].values.tolist() == [[3000.0, 600.0, True]]
