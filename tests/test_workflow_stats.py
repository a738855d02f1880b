"""The statistics stage in the shared demo run: its tables follow the contract and their numbers
agree with the alignment tables they were computed from."""

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

pytestmark = pytest.mark.e2e

DATASET = "demo_churches"


def read(run, name):
    return pd.read_parquet(run / "results/stats" / DATASET / f"{name}.parquet")


def alignment_tables(run):
    folder = run / "results" / DATASET
    return pd.concat([pd.read_parquet(path) for path in sorted(folder.glob("*/*/alignment.parquet"))]
                     + [pd.read_parquet(folder / "baselines/alignment.parquet")], ignore_index=True)


def test_summary_follows_the_contract_and_the_alignment_tables(demo_run):
    summary = read(demo_run, "alignment_summary")
    assert list(summary.columns) == ["model", "variant", "method", "layer", "head", "threshold", "metric",
                                     "n", "n_dropped", "mean", "ci_low", "ci_high", "small_n"]
    min_n = yaml.safe_load((demo_run / "config.yaml").read_text()).get("stats", {}).get("min_n", 10)
    assert (summary["small_n"] == (summary["n"] < min_n)).all()
    scores = alignment_tables(demo_run)
    config = yaml.safe_load((demo_run / "config.yaml").read_text())
    assert set(summary["model"]) == set(config["datasets"][DATASET]["models"]) | {"baseline"}
    assert set(summary["variant"]) >= {"frozen", ""}
    # every map of every table, three metrics each
    maps = scores.groupby(["model", "variant", "method", "layer", "head", "threshold"]).ngroups
    assert len(summary) == 3 * maps
    usable = scores[scores["scorable"]]
    expected = usable.groupby(["model", "variant", "method", "layer", "head", "threshold"])["iou"].agg(["mean", "count"])
    got = summary[summary["metric"] == "iou"].set_index(["model", "variant", "method", "layer", "head", "threshold"])
    np.testing.assert_allclose(got["mean"], expected["mean"].reindex(got.index))
    np.testing.assert_array_equal(got["n"], expected["count"].reindex(got.index))
    defined = got.dropna(subset=["ci_low"])
    assert len(defined) > 0.9 * len(got)
    assert (defined["ci_low"] <= defined["mean"] + 1e-12).all() and (defined["mean"] <= defined["ci_high"] + 1e-12).all()


def test_model_comparisons_recompute_from_the_alignment_tables(demo_run):
    comparisons = read(demo_run, "model_comparisons")
    assert {"models", "baselines"} <= set(comparisons["kind"])
    assert (comparisons["family_size"] >= 1).all()
    scores = alignment_tables(demo_run)
    row = comparisons[(comparisons["kind"] == "models") & (comparisons["metric"] == "iou")
                      & (comparisons["variant"] == "frozen") & (comparisons["layer_choice"] == "last")
                      & (comparisons["scope"] == "primary")].iloc[0]

    def series(model, method, layer):
        chosen = scores[(scores["model"] == model) & (scores["variant"] == "frozen") & (scores["method"] == method)
                        & (scores["layer"] == layer) & (scores["head"] == -1)
                        & (scores["threshold"] == row["threshold"]) & scores["scorable"]]
        return chosen.set_index("image_id")["iou"]

    a = series(row["model_a"], row["method_a"], row["layer_a"])
    b = series(row["model_b"], row["method_b"], row["layer_b"])
    a, b = a.align(b, join="inner")
    assert row["n_pairs"] == len(a)
    assert row["p_ttest"] == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert row["mean_diff"] == pytest.approx((a - b).mean())


def test_variant_comparisons_and_head_tables(demo_run):
    variants = read(demo_run, "variant_comparisons")
    summary = read(demo_run, "alignment_summary")
    tuned = set(summary["variant"]) - {"frozen", ""}
    assert set(variants["variant"]) == tuned  # empty table while no fine-tuned variant exists
    assert (variants["reference"] == "frozen").all()
    heads = read(demo_run, "head_analysis")
    assert (heads["head"] >= 0).all() and heads["mean_iou"].between(0, 1).all()
    specialisation = read(demo_run, "head_specialisation")
    assert specialisation["specialisation"].dropna().between(0, 1).all()
    correlation = read(demo_run, "head_rank_correlation")
    assert correlation["rho"].dropna().between(-1, 1).all()
    top = read(demo_run, "top_heads")
    assert (top["rank"] >= 1).all()
