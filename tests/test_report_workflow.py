"""Figures of the demo run and `snakemake --report` built on a copy of it."""

import zipfile
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from conftest import clone_run, snakemake

pytestmark = pytest.mark.e2e

FIGURE_FILES = (".png", ".svg", ".csv", ".txt")
THRESHOLD = 25.0  # the middle of the demo's alignment thresholds (figures.threshold: null)


def figure_pngs(workdir):
    return sorted((workdir / "results/figures").glob("*/*.png"))


def expected_figures(workdir):
    """The figures the demo must draw, given which stages the workflow copy holds."""
    expected = {f"demo_streets/{name}.png" for name in ("probe_accuracy", "cosine_distance", "geoscore", "gallery")}
    expected |= {f"demo_churches/{name}_frozen.png" for name in ("head_feature", "attention_overlays")}
    rules = workdir / "rules"
    if (rules / "stats.smk").exists():
        expected |= {f"demo_churches/{name}.png" for name in ("leaderboard", "iou_by_layer", "threshold_sensitivity")}
    if (rules / "finetune.smk").exists():
        expected |= {"demo_churches/delta_iou.png"}
    if (rules / "captions.smk").exists():
        expected |= {"demo_captions/caption_continents.png"}
    if (rules / "faithfulness.smk").exists():
        expected |= {"demo_churches/plausibility_faithfulness.png"}
    return expected


def test_every_study_has_its_figures_with_svg_numbers_and_caption(demo_run):
    drawn = {str(path.relative_to(demo_run / "results/figures")) for path in figure_pngs(demo_run)}
    assert expected_figures(demo_run) <= drawn
    for png in figure_pngs(demo_run):
        for suffix in FIGURE_FILES:
            assert png.with_suffix(suffix).stat().st_size > 0, png.with_suffix(suffix)
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (demo_run / "logs/figures/demo_streets/geo.log").is_file()


def test_cosine_distance_figure_draws_the_geometry_tables(demo_run):
    drawn = pd.read_csv(demo_run / "results/figures/demo_streets/cosine_distance.csv")
    for model in ("tiny_clip", "tiny_dinov2"):
        bins = pd.read_parquet(demo_run / f"results/demo_streets/{model}/frozen/geometry_bins.parquet")
        own = drawn[drawn["panel"] == f"{model} · cls"]
        np.testing.assert_allclose(own["cosine_mean"], bins["cosine_mean"], equal_nan=True)
        assert own["count"].tolist() == bins["count"].tolist()


def test_overlay_exemplars_are_the_extremes_of_the_alignment_table(demo_run):
    exemplars = pd.read_csv(demo_run / "results/figures/demo_churches/attention_overlays_frozen.csv",
                            keep_default_na=False)
    assert set(exemplars["rank"]) == {"best", "median", "worst"}
    for (model, method, layer), own in exemplars.groupby(["model", "method", "layer"]):
        table = pd.read_parquet(demo_run / f"results/demo_churches/{model}/frozen/alignment.parquet")
        scored = table[(table["method"] == method) & (table["layer"] == layer) & (table["head"] == -1)
                       & (table["threshold"] == THRESHOLD) & table["scorable"]]
        ranks = own.set_index("rank")["iou"]
        assert ranks["best"] == pytest.approx(scored["iou"].max())
        assert ranks["worst"] == pytest.approx(scored["iou"].min())
        assert ranks["worst"] <= ranks["median"] <= ranks["best"]
        if method == "cls":  # the last stored layer
            assert layer == table.loc[table["method"] == "cls", "layer"].max()


def test_leaderboard_follows_the_statistics_summary(demo_run):
    summary_path = demo_run / "results/stats/demo_churches/alignment_summary.parquet"
    if not (demo_run / "rules/stats.smk").exists():
        pytest.skip("the statistics stage is not in this workflow yet")
    summary = pd.read_parquet(summary_path)
    board = pd.read_csv(demo_run / "results/figures/demo_churches/leaderboard.csv", keep_default_na=False)
    assert board["iou_mean"].is_monotonic_decreasing
    for _, row in board.iterrows():
        match = summary[(summary["model"] == row["model"]) & (summary["method"] == row["method"])
                        & (summary["layer"] == row["layer"]) & (summary["head"] == -1)
                        & (summary["threshold"] == THRESHOLD) & (summary["metric"] == "iou")
                        & (summary["variant"].fillna("").astype(str) == str(row["variant"]))]
        assert len(match) == 1 and match["mean"].iloc[0] == pytest.approx(row["iou_mean"])


def test_report_archive_and_html_hold_every_figure_and_table(demo_run, tmp_path):
    clone = clone_run(demo_run, tmp_path / "run")
    result = snakemake(clone, "--report", "report.zip")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with zipfile.ZipFile(clone / "report.zip") as archive:
        names = Counter(name.rsplit("/", 1)[-1] for name in archive.namelist())
    figures = figure_pngs(clone)
    assert figures
    wanted = Counter(path.name for path in figures) + Counter(path.with_suffix(".csv").name for path in figures)
    missing = {name: count for name, count in wanted.items() if names[name] < count}
    assert not missing, f"figures missing from report.zip: {missing}"
    check_headline_tables_in(clone / "report.zip")

    result = snakemake(clone, "--report", "report.html")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    html = (clone / "report.html").read_text(encoding="utf-8")
    for title in ("Probe accuracy", "Attention overlays", "demo_streets", "demo_churches"):
        assert title in html


# the headline tables each study of the demo publishes (rules/report_common.smk: STUDY_TABLES)
DEMO_TABLES = {
    "demo_churches": ("leaderboard", "model_comparisons", "variant_comparisons", "head_specialisation",
                      "finetune", "style_probe", "faithfulness"),
    "demo_streets": ("probes", "knn", "calibration"),
    "demo_captions": ("caption_accuracy", "caption_unknown", "caption_diversity"),
}


def _markdown_table_after(markdown, title):
    """The rows (lists of cells) of the first Markdown table after the paragraph that starts with `title`."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"**{title}.**"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows[0], rows[2:]


def test_summary_numbers_are_the_study_outputs(demo_run):
    from encoderlens.report.summary import format_value

    markdown = (demo_run / "results/summary.md").read_text(encoding="utf-8")
    for dataset, names in DEMO_TABLES.items():
        assert f"## {dataset}" in markdown
        for name in names:
            csv = demo_run / f"results/tables/{dataset}/{name}.csv"
            table = pd.read_csv(csv, keep_default_na=False)
            assert list(table.columns[:3]) == ["dataset", "model", "variant"], csv
            assert set(table["dataset"]) <= {dataset}
            assert "threshold" not in table.columns and not any("sub-region" in c for c in table.columns)
            assert f"results/tables/{dataset}/{name}.csv" in markdown

    # the leaderboard's rows in the summary carry the statistics summary's numbers
    summary = pd.read_parquet(demo_run / "results/stats/demo_churches/alignment_summary.parquet")
    header, rows = _markdown_table_after(markdown, "Leaderboard")
    assert rows
    for cells in rows:
        row = dict(zip(header, cells))
        match = summary[(summary["model"] == row["model"]) & (summary["method"] == row["method"])
                        & (summary["layer"] == int(row["layer"])) & (summary["head"] == -1)
                        & (summary["threshold"] == THRESHOLD) & (summary["metric"] == "iou")
                        & (summary["variant"].fillna("").astype(str) == row["variant"])]
        assert len(match) == 1
        assert row["iou_mean"] == format_value(match["mean"].iloc[0])
        assert row["iou_ci_low"] == format_value(match["ci_low"].iloc[0])

    # kNN: GeoScore and median km of every model, variant, embedding and method, as in knn.parquet
    header, rows = _markdown_table_after(markdown, "kNN geolocation: GeoScore and distance")
    for cells in rows:
        row = dict(zip(header, cells))
        knn = pd.read_parquet(demo_run / f"results/demo_streets/{row['model']}/{row['variant']}/knn.parquet")
        match = knn[(knn["features"] == row["features"]) & (knn["method"] == row["method"])]
        assert row["geoscore"] == format_value(match["geoscore"].iloc[0])
        assert row["median_km"] == format_value(match["median_km"].iloc[0])

    # caption accuracy with its Wilson interval; the Unknown share of all captions
    evaluation = pd.read_parquet(demo_run / "results/demo_captions/captions/evaluation.parquet")
    header, rows = _markdown_table_after(markdown, "Caption country accuracy")
    overall = dict(zip(header, rows[0]))
    first = evaluation.iloc[0]
    assert (overall["scope"], overall["accuracy"], overall["ci_low"]) == (
        "overall", format_value(first["accuracy"]), format_value(first["ci_low"]))
    distributions = pd.read_parquet(demo_run / "results/demo_captions/captions/distributions.parquet")
    everything = distributions[(distributions["entity"] == "all") & (distributions["level"] == "country")]
    unknown = pd.read_csv(demo_run / "results/tables/demo_captions/caption_unknown.csv", keep_default_na=False)
    own = unknown[unknown["entity"] == "all"].iloc[0]
    assert own["n_captions"] == everything["count"].sum()
    assert own["unknown_share"] == pytest.approx(everything.loc[everything["place"] == "Unknown", "share"].sum())

    # fine-tuning: held-out accuracy as in metrics.json
    tuned = pd.read_csv(demo_run / "results/tables/demo_churches/finetune.csv", keep_default_na=False)
    for _, row in tuned.iterrows():
        import json
        metrics = json.loads((demo_run / f"results/demo_churches/{row['model']}/finetune/{row['variant']}"
                                          "/metrics.json").read_text())
        assert row["heldout_accuracy"] == pytest.approx(metrics["heldout_accuracy"], rel=1e-12)
    assert (demo_run / "results/summary.html").stat().st_size > 0


def check_headline_tables_in(archive_path):
    """Every study's headline tables (HTML shown, CSV to download) and the summary are in the report."""
    with zipfile.ZipFile(archive_path) as archive:
        names = {name.rsplit("/", 1)[-1]: name for name in archive.namelist()}
        for dataset, tables in DEMO_TABLES.items():
            for name in tables:
                assert f"{name}.html" in names and f"{name}.csv" in names, (dataset, name)
        page = archive.read(names["model_comparisons.html"]).decode("utf-8")
        assert "Holm" in page and ("<table>" in page or "no rows" in page)
        summary = archive.read(names["summary.html"]).decode("utf-8")
        assert "demo_churches" in summary and "demo_captions" in summary and "Leaderboard" in summary
