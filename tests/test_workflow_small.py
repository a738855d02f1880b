"""The default targets on datasets of 1 to 5 images (issue 21, items 6 and 7): a real Snakemake run on
the demo's tiny CLIP. Nothing crashes; what cannot be computed is recorded as such; statistics on too
few images are flagged in the tables and the figures' captions."""

import pandas as pd
import pytest

from conftest import snakemake

TINY_CONFIG = """
datasets:
  churches_five:
    format: wikichurches
    source: synthetic
    synthetic: {n_images: 5, seed: 0, n_annotated: 2}
    models: [tiny_clip]
  streets_one:
    format: osv5m
    source: synthetic
    synthetic: {n_images: 1, seed: 0}
    models: [tiny_clip]
  streets_five:
    format: osv5m
    source: synthetic
    synthetic: {n_images: 5, seed: 0}
    models: [tiny_clip]
models:
  tiny_clip: {family: clip, source: tiny, device: cpu, threads: 1}
alignment: {analysis_size: 64, pointing_tolerance: 4, random_draws: 2}
stats: {n_resamples: 200, min_n: 10}
geo:
  geometry_pairs: 100
  gallery_size: 40
  gallery_seeds: [0]
  calibration: {models: []}
"""


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from conftest import copy_workflow

    workdir = copy_workflow(tmp_path_factory.mktemp("tiny") / "workflow")
    (workdir / "tiny.yaml").write_text(TINY_CONFIG)
    result = snakemake(workdir, "--configfile", "tiny.yaml", "--cores", "2")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return workdir


def test_knn_on_five_images_clamps_k_with_a_note(tiny_run):
    knn = pd.read_parquet(tiny_run / "results/streets_five/tiny_clip/frozen/knn.parquet")
    # 5 images: 1 query, 4 in the gallery; the default geo.knn_k = 10 is clamped to 4
    assert knn["computable"].all() and (knn["k"] == 4).all() and (knn["n"] == 1).all()
    assert set(knn["method"]) == {"top1", "weighted_top4"}
    assert knn["note"].str.contains("geo.knn_k = 10 clamped to 4, the gallery size").all()
    predictions = pd.read_parquet(tiny_run / "results/streets_five/tiny_clip/frozen/knn_predictions.parquet")
    assert len(predictions) == 2 * knn["features"].nunique()  # 1 query x 2 methods per features set


def test_one_image_records_not_computable_rows(tiny_run):
    folder = tiny_run / "results/streets_one/tiny_clip"
    knn = pd.read_parquet(folder / "frozen/knn.parquet")
    assert not knn["computable"].any() and len(knn) > 0
    assert knn["note"].str.startswith("not computable: 1 image(s)").all()
    assert pd.read_parquet(folder / "frozen/knn_predictions.parquet").empty
    geometry = pd.read_parquet(folder / "frozen/geometry.parquet")
    assert not geometry["computable"].any()
    probes = pd.read_parquet(folder / "probes.parquet")
    assert not probes["probeable"].any()


def test_style_probe_on_five_images_is_not_computable(tiny_run):
    table = pd.read_parquet(tiny_run / "results/churches_five/tiny_clip/style_probe.parquet")
    assert len(table) > 0 and not table["computable"].any()
    assert table["accuracy"].isna().all() and (table["folds"] == 0).all()
    assert table["note"].str.contains("at least 2 churches").all()


def test_statistics_on_two_images_are_flagged(tiny_run):
    stats = tiny_run / "results/stats/churches_five"
    summary = pd.read_parquet(stats / "alignment_summary.parquet")
    assert (summary["n"] <= 2).all() and summary["small_n"].all()
    models = pd.read_parquet(stats / "model_comparisons.parquet")
    assert len(models) and models["small_n"].all()
    caption = (tiny_run / "results/figures/churches_five/leaderboard.txt").read_text()
    assert "fewer than 10 images (stats.min_n)" in caption
    board = pd.read_csv(tiny_run / "results/figures/churches_five/leaderboard.csv")
    assert board["small_n"].all() and board["label"].str.endswith("\u2020").all()
