"""Model, baseline and tuned-vs-frozen comparisons, the per-head analysis and the study entry points,
on synthetic tables with planted answers."""

import gc

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from encoderlens.stats import (alignment_statistics, head_feature_iou, head_rank_correlation,
                               head_specialisation, head_statistics, model_comparisons,
                               normalised_entropy_specialisation, score_matrix, threshold_free, top_heads,
                               variant_comparisons)
from test_stats import alignment_rows

THRESHOLDS = [10.0, 30.0]
N = 30
NOISE = np.random.default_rng(0).random((4, N)) * 0.1


def study_table():
    """Three models with planted effects, their fine-tuned variants, and two baselines.

    vit_a (cls, layers 0-2 + rollout): IoU 0.3 + 0.1 * layer, so its best and last layer is 2;
    vit_b (cls, layers 0-2): IoU 0.5 - 0.1 * layer, best layer 0, last layer 2;
    cnn (gradcam, one map); baselines random (0.1) and gaussian (0.2).
    Variants: vit_a linear = frozen exactly (a linear head leaves the backbone); vit_a lora = frozen + 0.05.
    """
    def planted(base, slope, noise):
        return lambda layer, head, threshold, i: base + slope * max(layer, 0) + NOISE[noise, i] + threshold / 1000

    heads = [-1, 0, 1]
    parts = [
        alignment_rows("vit_a", "frozen", "cls", [0, 1, 2], heads, THRESHOLDS, planted(0.3, 0.1, 0), N),
        alignment_rows("vit_a", "frozen", "rollout", [-1], [-1], THRESHOLDS, planted(0.25, 0, 0), N),
        alignment_rows("vit_b", "frozen", "cls", [0, 1, 2], heads, THRESHOLDS, planted(0.5, -0.1, 1), N,
                       unscorable={4}),
        alignment_rows("cnn", "frozen", "gradcam", [-1], [-1], THRESHOLDS, planted(0.35, 0, 2), N),
        alignment_rows("baseline", "", "random", [-1], [-1], THRESHOLDS, planted(0.1, 0, 3), N),
        alignment_rows("baseline", "", "gaussian", [-1], [-1], THRESHOLDS, planted(0.2, 0, 3), N),
        alignment_rows("vit_a", "linear", "cls", [0, 1, 2], heads, THRESHOLDS, planted(0.3, 0.1, 0), N),
        alignment_rows("vit_a", "lora", "cls", [0, 1, 2], heads, THRESHOLDS, planted(0.35, 0.1, 0), N),
    ]
    table = pd.concat(parts, ignore_index=True)
    # coverage and the pointing game repeat across thresholds, as the alignment stage writes them;
    # alignment_rows already draws them per (layer, head, image); frozen and linear share them
    linear = table["variant"] == "linear"
    frozen_cls = (table["model"] == "vit_a") & (table["variant"] == "frozen") & (table["method"] == "cls")
    table.loc[linear, ["coverage", "pointing_hit"]] = table.loc[frozen_cls, ["coverage", "pointing_hit"]].to_numpy()
    return table


@pytest.fixture(scope="module")
def matrix():
    return score_matrix(study_table())


def test_threshold_free_metrics_are_detected(matrix):
    assert threshold_free(matrix, "coverage") and threshold_free(matrix, "pointing_hit")
    assert not threshold_free(matrix, "iou")


def test_model_comparisons_pick_the_planted_maps_and_match_scipy(matrix):
    table = model_comparisons(matrix, ["iou", "coverage"], kinds=("models", "baselines"),
                              layer_choices=("last", "best"), scopes=("primary", "cls"), n_resamples=500)
    models = table[(table["kind"] == "models") & (table["metric"] == "iou")]
    primary_last = models[(models["scope"] == "primary") & (models["layer_choice"] == "last")]
    assert len(primary_last) == 3 * len(THRESHOLDS)  # 3 models, 3 pairs per threshold
    assert set(primary_last["family_size"]) == {3}
    pair = primary_last[(primary_last["model_a"] == "vit_a") & (primary_last["model_b"] == "vit_b")
                        & (primary_last["threshold"] == 30.0)].iloc[0]
    assert (pair["method_a"], pair["layer_a"], pair["method_b"], pair["layer_b"]) == ("cls", 2, "cls", 2)
    a = 0.3 + 0.2 + NOISE[0] + 0.03
    b = 0.5 - 0.2 + NOISE[1] + 0.03
    keep = np.arange(N) != 4  # vit_b's unscorable image
    assert pair["n_pairs"] == N - 1 and pair["n_dropped"] == 1
    assert pair["mean_diff"] == pytest.approx((a - b)[keep].mean())
    assert pair["p_ttest"] == pytest.approx(stats.ttest_rel(a[keep], b[keep]).pvalue)
    assert pair["p_wilcoxon"] == pytest.approx(stats.wilcoxon(a[keep], b[keep]).pvalue)
    assert pair["diff_ci_low"] < pair["mean_diff"] < pair["diff_ci_high"]
    cnn = primary_last[primary_last["model_a"] == "cnn"]  # pairs in name order
    assert len(cnn) == 2 * len(THRESHOLDS)
    assert set(cnn["method_a"]) == {"gradcam"} and set(cnn["layer_a"]) == {-1}
    best = models[(models["scope"] == "primary") & (models["layer_choice"] == "best")]
    assert set(best.loc[best["model_a"] == "vit_b", "layer_a"]) | set(best.loc[best["model_b"] == "vit_b", "layer_b"]) == {0}
    # only the ViTs have CLS maps: one pair per threshold in the cls scope
    assert len(models[(models["scope"] == "cls") & (models["layer_choice"] == "last")]) == len(THRESHOLDS)
    # Holm within each family, checked against statsmodels
    gc.freeze()  # multipletests runs gc.collect() per call; frozen objects make it cheap
    for _, family in table.groupby("family"):
        expected = multipletests(family["p_ttest"], alpha=0.05, method="holm")[1]
        np.testing.assert_allclose(family["p_ttest_holm"], expected)
    gc.unfreeze()
    coverage = table[table["metric"] == "coverage"]
    assert coverage["threshold"].isna().all()  # threshold-free: compared once
    baselines = table[(table["kind"] == "baselines") & (table["metric"] == "iou") & (table["variant"] == "frozen")
                      & (table["scope"] == "primary") & (table["layer_choice"] == "last")]
    assert len(baselines) == 3 * 2 * len(THRESHOLDS) and set(baselines["family_size"]) == {6}
    tuned = table[(table["kind"] == "baselines") & (table["variant"] == "lora") & (table["metric"] == "iou")]
    assert set(tuned["model_a"]) == {"vit_a"}  # each variant's maps against the same baselines
    assert set(baselines["model_b"]) == {"baseline"} and (baselines["mean_diff"] > 0).all()


def test_variant_comparisons_report_delta_iou_and_the_identical_linear_variant(matrix):
    table = variant_comparisons(matrix, ["iou", "coverage"], layer_choices=("last",), scopes=("primary",),
                                n_resamples=500)
    iou = table[table["metric"] == "iou"]
    assert set(iou["model"]) == {"vit_a"} and set(iou["variant"]) == {"linear", "lora"}
    assert set(iou["reference"]) == {"frozen"} and set(iou["layer"]) == {2}
    linear = iou[iou["variant"] == "linear"]
    assert (linear["note"] == "all differences zero").all() and (linear["p_ttest"] == 1).all()
    assert (linear["mean_diff"] == 0).all() and (linear["cohens_dz"] == 0).all()
    lora = iou[iou["variant"] == "lora"]
    assert lora["mean_diff"].to_numpy() == pytest.approx(0.05)
    assert (lora["note"] == "zero variance of differences").all()  # planted shift: constant
    assert set(iou["family_size"]) == {2}
    assert variant_comparisons(score_matrix(study_table().query("variant != 'linear' and variant != 'lora'")),
                               ["iou"]).empty


def test_variant_comparison_matches_scipy_on_a_noisy_shift():
    table = study_table()
    lora = table["variant"] == "lora"
    shift = np.random.default_rng(9).normal(0.03, 0.05, lora.sum())
    table.loc[lora, "iou"] = table.loc[lora, "iou"] + shift
    result = variant_comparisons(score_matrix(table), ["iou"], layer_choices=("last",), scopes=("primary",),
                                 n_resamples=500)
    row = result[(result["variant"] == "lora") & (result["threshold"] == 10.0)].iloc[0]
    pick = lambda variant: table[(table["model"] == "vit_a") & (table["variant"] == variant)
                                 & (table["method"] == "cls") & (table["layer"] == 2)
                                 & (table["head"] == -1) & (table["threshold"] == 10.0)].sort_values("image_id")["iou"]
    tuned, frozen = pick("lora").to_numpy(), pick("frozen").to_numpy()
    assert row["mean_diff"] == pytest.approx((tuned - frozen).mean())
    assert row["t"] == pytest.approx(stats.ttest_rel(tuned, frozen).statistic)
    assert row["p_wilcoxon"] == pytest.approx(stats.wilcoxon(tuned, frozen).pvalue)


# ---- heads --------------------------------------------------------------------------------------
def feature_table():
    """Two layers x three heads, three feature types. Head (1, 0) finds portals only, head (1, 1)
    is equally good on all, the others are noise."""
    rng = np.random.default_rng(1)
    rows = []
    for image in range(12):
        for feature in ("portal", "window", "tower"):
            for layer in (0, 1):
                for head in (-1, 0, 1, 2):
                    iou = rng.random() * 0.1
                    if (layer, head) == (1, 0):
                        iou = 0.8 if feature == "portal" else 0.01
                    if (layer, head) == (1, 1):
                        iou = 0.4
                    rows.append({"image_id": f"i{image}", "feature": feature, "model": "vit", "variant": "frozen",
                                 "method": "cls", "layer": layer, "head": head, "threshold": 20.0, "iou": iou,
                                 "coverage": 0.5, "pointing_hit": 1.0, "scorable": not (image == 0 and head == 2)})
    return pd.DataFrame(rows)


def test_head_feature_iou_ranks_and_counts():
    features = feature_table()
    table = head_feature_iou(features)
    assert (table["head"] >= 0).all() and len(table) == 2 * 3 * 3
    usable = features[(features["head"] >= 0) & features["scorable"]]
    expected = usable.groupby(["layer", "head", "feature"])["iou"].mean()
    np.testing.assert_allclose(table.set_index(["layer", "head", "feature"])["mean_iou"], expected)
    assert set(table.loc[table["head"] == 2, "n_dropped"]) == {1}
    portal = table[table["feature"] == "portal"].set_index(["layer", "head"])
    assert portal.loc[(1, 0), "rank"] == 1 and portal.loc[(1, 1), "rank"] == 2
    top = top_heads(table, top_k=2, min_images=5)
    assert top[top["feature"] == "portal"][["layer", "head"]].values.tolist() == [[1, 0], [1, 1]]
    assert top[top["feature"] == "window"][["layer", "head"]].values.tolist()[0] == [1, 1]


def test_head_specialisation_index():
    assert normalised_entropy_specialisation(np.array([[1.0, 1.0, 1.0]]))[0] == pytest.approx(0.0)
    assert normalised_entropy_specialisation(np.array([[2.0, 0.0, 0.0]]))[0] == pytest.approx(1.0)
    shares = np.array([[0.5, 0.3, 0.2]])
    expected = 1 - stats.entropy(shares[0]) / np.log(3)
    assert normalised_entropy_specialisation(shares)[0] == pytest.approx(expected)
    table = head_specialisation(head_feature_iou(feature_table()), min_images=5).set_index(["layer", "head"])
    assert table.loc[(1, 0), "preferred_feature"] == "portal"
    assert table.loc[(1, 0), "specialisation"] > 0.5 > table.loc[(1, 1), "specialisation"]
    assert table.loc[(1, 0), "specialisation"] == table["specialisation"].max()
    assert set(table["n_features"]) == {3}
    # a feature type seen on too few images leaves the index
    assert head_specialisation(head_feature_iou(feature_table()), min_images=13).empty


def test_head_rank_correlation_matches_scipy_spearman():
    table = head_feature_iou(feature_table())
    correlation = head_rank_correlation(table, min_images=5)
    assert len(correlation) == 3 and set(correlation["n_heads"]) == {6}
    wide = table.pivot_table(index=["layer", "head"], columns="feature", values="mean_iou")
    for _, row in correlation.iterrows():
        expected = stats.spearmanr(wide[row["feature_a"]], wide[row["feature_b"]])
        assert row["rho"] == pytest.approx(expected.statistic)
        assert row["p_value"] == pytest.approx(expected.pvalue)


# ---- the study entry points on parquet files ------------------------------------------------------
SETTINGS = {"n_resamples": 500, "confidence": 0.95, "seed": 0, "alpha": 0.05,
            "metrics": ["iou", "coverage", "pointing_hit"],
            "comparisons": {"kinds": ["models", "baselines", "variants"], "metrics": ["iou"],
                            "layer_choices": ["last", "best"], "scopes": ["primary"],
                            "method_preference": ["cls", "mean", "gradcam"]}}


def test_alignment_statistics_from_files(tmp_path):
    table = study_table()
    paths = []
    for (model, variant), part in table.groupby(["model", "variant"]):
        path = tmp_path / f"{model}_{variant or 'baselines'}.parquet"
        part.to_parquet(path)
        paths.append(path)
    tables = alignment_statistics(paths, SETTINGS)
    assert set(tables["summary"]["model"]) == {"vit_a", "vit_b", "cnn", "baseline"}
    assert not tables["models"].empty and not tables["variants"].empty
    broken = tmp_path / "broken.parquet"
    broken.write_text("not parquet")
    with pytest.raises(ValueError, match="broken.parquet"):
        alignment_statistics([*paths, broken], SETTINGS)


def test_head_statistics_from_files(tmp_path):
    path = tmp_path / "alignment_features.parquet"
    feature_table().to_parquet(path)
    tables = head_statistics([path], {"thresholds": None, "min_images": 5, "top_k": 3})
    assert {"heads", "specialisation", "correlation", "top"} == set(tables)
    assert len(tables["top"]) == 3 * 3


def test_rows_on_few_images_are_flagged_small_n(tmp_path):
    # issue 21 item 7: a CI or p-value from 2 images used to be reported without comment
    noise = np.random.default_rng(1).random(20)
    few = alignment_rows("vit_a", "frozen", "cls", [0], [-1], [50.0],
                         lambda layer, head, t, i: noise[i], unscorable=set(range(2, 20)))
    many = alignment_rows("vit_b", "frozen", "cls", [0], [-1], [50.0],
                          lambda layer, head, t, i: noise[i] / 2)
    paths = []
    for name, part in (("few", few), ("many", many)):
        paths.append(tmp_path / f"{name}.parquet")
        part.to_parquet(paths[-1])
    settings = dict(SETTINGS, min_n=10, comparisons=dict(SETTINGS["comparisons"], kinds=["models"],
                                                         layer_choices=["last"]))
    tables = alignment_statistics(paths, settings)
    summary = tables["summary"].set_index(["model", "metric"])
    assert summary.loc[("vit_a", "iou"), "n"] == 2 and summary.loc[("vit_a", "iou"), "small_n"]
    assert summary.loc[("vit_b", "iou"), "n"] == 20 and not summary.loc[("vit_b", "iou"), "small_n"]
    models = tables["models"]
    assert len(models) and (models["small_n"] == (models["n_pairs"] < 10)).all() and models["small_n"].any()
    # the threshold is the config's: at min_n = 2 nothing is flagged
    relaxed = alignment_statistics(paths, dict(settings, min_n=2))
    assert not relaxed["summary"]["small_n"].any() and not relaxed["models"]["small_n"].any()
