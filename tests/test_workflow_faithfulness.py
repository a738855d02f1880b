"""Faithfulness in the shared demo run: the tiny CLIP's curves, their statistics, figure and headline table."""

import h5py
import numpy as np
import pandas as pd
import pytest

from encoderlens.attention.methods import available_methods
from encoderlens.faithfulness.curves import area_under
from encoderlens.faithfulness.job import COLUMNS

pytestmark = pytest.mark.e2e

DATASET, MODEL = "demo_churches", "tiny_clip"


def test_curves_of_every_stored_method(demo_run):
    folder = demo_run / "results" / DATASET / MODEL / "frozen"
    table = pd.read_parquet(folder / "faithfulness.parquet")
    curves = pd.read_parquet(folder / "faithfulness_curves.parquet")
    assert list(table.columns) == COLUMNS
    with h5py.File(folder / "attention.h5", "r") as store:
        methods = available_methods(store)
        last_layer = int(store["layers"][-1])
    annotated = set(pd.read_parquet(demo_run / "results" / DATASET / "annotations.parquet")["image_id"])
    assert set(table["image_id"]) == annotated
    # the demo's settings: head mean at the last kept layer for per-layer methods, three orders
    assert set(table["method"]) == set(methods)
    assert set(table.loc[table["method"] == "cls", "layer"]) == {last_layer}
    assert (table["head"] == -1).all()
    assert len(table) == len(annotated) * len(methods) * 3
    assert table.groupby(["image_id", "order"])["deletion_auc"].nunique().loc[:, "random"].eq(1).all()
    # deletion starts at the image (relative target 1) and ends fully perturbed; insertion the reverse
    deletion = curves[curves["curve"] == "deletion"]
    insertion = curves[curves["curve"] == "insertion"]
    np.testing.assert_allclose(deletion.loc[deletion["step"] == 0, "value"], 1.0, atol=1e-4)
    np.testing.assert_allclose(insertion.loc[insertion["step"] == 16, "value"], 1.0, atol=1e-4)
    blank = deletion.loc[deletion["step"] == 16].groupby("image_id")["value"]
    assert blank.nunique().eq(1).all()          # every order ends at the same fully perturbed image
    one = curves[(curves["method"] == methods[0]) & (curves["order"] == "map") & (curves["curve"] == "deletion")]
    areas = one.groupby("image_id").apply(lambda c: area_under(c["value"].to_numpy(), c["fraction"].to_numpy()),
                                          include_groups=False)
    got = table[(table["method"] == methods[0]) & (table["order"] == "map")].set_index("image_id")["deletion_auc"]
    np.testing.assert_allclose(got.loc[areas.index], areas.astype(float), rtol=1e-9)


def test_statistics_figure_and_summary(demo_run):
    stats = demo_run / "results/stats" / DATASET
    table = pd.read_parquet(demo_run / "results" / DATASET / MODEL / "frozen/faithfulness.parquet")
    summary = pd.read_parquet(stats / "faithfulness_summary.parquet")
    expected = table.groupby(["method", "layer", "order"])["deletion_auc"].mean()
    got = summary[summary["metric"] == "deletion_auc"].set_index(["method", "layer", "order"])["mean"]
    pd.testing.assert_series_equal(got.sort_index(), expected.sort_index(), check_names=False)
    comparisons = pd.read_parquet(stats / "faithfulness_comparisons.parquet")
    assert set(comparisons["kind"]) == {"random", "methods"}
    plausibility = pd.read_parquet(stats / "plausibility_faithfulness.parquet")
    assert (plausibility["n"] == table["image_id"].nunique()).all()
    figure = demo_run / "results/figures" / DATASET / "plausibility_faithfulness"
    for suffix in (".png", ".svg", ".csv", ".txt"):
        assert figure.with_suffix(suffix).stat().st_size > 0
    assert len(pd.read_csv(figure.with_suffix(".csv"))) == table["method"].nunique()
    markdown = (demo_run / "results/summary.md").read_text(encoding="utf-8")
    assert "Does the map matter to the model? (faithfulness)" in markdown
    assert f"results/tables/{DATASET}/faithfulness.csv" in markdown
