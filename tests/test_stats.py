"""The statistics library against scipy.stats / statsmodels on random data, and its edge cases."""

import gc

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.weightstats import DescrStatsW

from encoderlens.stats import (bootstrap_mean_ci, holm, paired_test, resample_generator, score_matrix,
                               summarise_alignment)
from encoderlens.stats.paired import paired_tests

IDS = [f"Q{i:04d}" for i in range(200)]


def scipy_interval(sample, seed, ids, n_resamples):
    result = stats.bootstrap((sample,), np.nanmean, method="percentile", n_resamples=n_resamples,
                             rng=resample_generator(seed, ids))
    return result.confidence_interval


# ---- bootstrap ----------------------------------------------------------------------------------
def test_bootstrap_equals_scipy_given_the_same_generator():
    rng = np.random.default_rng(3)
    values = rng.beta(2, 6, (5, 60))
    values[1, [3, 17]] = np.nan  # dropped: scipy's nanmean on the same resampled images
    values[2] = values[0]
    ids = IDS[:60]
    result = bootstrap_mean_ci(values, ids, n_resamples=3000, confidence=0.9, seed=11)
    for row in range(5):
        expected = stats.bootstrap((values[row],), np.nanmean, method="percentile", n_resamples=3000,
                                   confidence_level=0.9, rng=resample_generator(11, ids)).confidence_interval
        assert result.ci_low[row] == pytest.approx(expected.low, abs=1e-12)
        assert result.ci_high[row] == pytest.approx(expected.high, abs=1e-12)
        assert result.mean[row] == pytest.approx(np.nanmean(values[row]))
    assert result.n.tolist() == [60, 58, 60, 60, 60]


def test_bootstrap_agrees_with_scipy_on_independent_resamples_at_large_n():
    rng = np.random.default_rng(0)
    sample = rng.normal(0.3, 1.0, 1000)
    ids = [f"img{i}" for i in range(1000)]
    ours = bootstrap_mean_ci(sample[None], ids, n_resamples=5000, seed=1)
    theirs = stats.bootstrap((sample,), np.mean, method="percentile", n_resamples=5000,
                             rng=np.random.default_rng(99)).confidence_interval
    # width about 0.124; the Monte Carlo error of each endpoint about 0.003 per implementation
    width = theirs.high - theirs.low
    assert abs(ours.ci_low[0] - theirs.low) < 0.1 * width
    assert abs(ours.ci_high[0] - theirs.high) < 0.1 * width
    normal = stats.norm.ppf(0.975) * sample.std(ddof=1) / np.sqrt(len(sample))  # and the textbook interval
    assert ours.ci_low[0] == pytest.approx(sample.mean() - normal, abs=0.1 * width)
    assert ours.ci_high[0] == pytest.approx(sample.mean() + normal, abs=0.1 * width)


def test_bootstrap_interval_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(5)
    true_mean = 2 / (2 + 8)
    samples = rng.beta(2, 8, (600, 80))  # 600 independent studies of 80 IoU-like scores
    result = bootstrap_mean_ci(samples, n_resamples=2000, seed=2)
    coverage = np.mean((result.ci_low <= true_mean) & (true_mean <= result.ci_high))
    assert 0.91 <= coverage <= 0.98  # percentile bootstrap: close to nominal at n = 80


def test_bootstrap_edge_cases_n1_n0_and_independence_from_other_rows():
    rng = np.random.default_rng(1)
    values = rng.random((4, 30))
    values[1, 1:] = np.nan  # one usable image: a mean, no interval
    values[2, :] = np.nan  # none: nothing
    result = bootstrap_mean_ci(values, IDS[:30], n_resamples=500, seed=0)
    assert result.n.tolist() == [30, 1, 0, 30]
    assert result.mean[1] == values[1, 0] and np.isnan(result.mean[2])
    assert np.isnan(result.ci_low[1:3]).all() and np.isnan(result.ci_high[1:3]).all()
    alone = bootstrap_mean_ci(values[[3]], IDS[:30], n_resamples=500, seed=0)
    # the same interval alone as among other rows (up to the BLAS summation order)
    assert alone.ci_low[0] == pytest.approx(result.ci_low[3], abs=1e-12)
    assert alone.ci_high[0] == pytest.approx(result.ci_high[3], abs=1e-12)
    shuffled = bootstrap_mean_ci(values[::-1], IDS[:30], n_resamples=500, seed=0)
    np.testing.assert_allclose(shuffled.ci_low[::-1], result.ci_low, atol=1e-12)
    other_seed = bootstrap_mean_ci(values[[3]], IDS[:30], n_resamples=500, seed=1)
    assert other_seed.ci_low[0] != result.ci_low[3]
    assert result.ci_low[0] <= result.mean[0] <= result.ci_high[0]
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_mean_ci(values, confidence=1.5)


# ---- paired tests -------------------------------------------------------------------------------
def test_paired_test_matches_scipy_and_statsmodels_and_drops_nan_pairs():
    rng = np.random.default_rng(7)
    for n, shift in [(12, 0.0), (40, 0.05), (139, 0.02)]:
        a = rng.beta(2, 6, n)
        b = np.clip(a + rng.normal(shift, 0.08, n), 0, 1)
        a_nan, b_nan = a.copy(), b.copy()
        a_nan[0], b_nan[1] = np.nan, np.nan
        result = paired_test(a_nan, b_nan)
        keep = slice(2, None)
        assert result["n_pairs"] == n - 2 and result["n_dropped"] == 2
        ttest = stats.ttest_rel(a[keep], b[keep])
        wilcoxon = stats.wilcoxon(a[keep], b[keep])
        t_sm, p_sm, _ = DescrStatsW(a[keep] - b[keep]).ttest_mean(0)
        assert result["t"] == pytest.approx(ttest.statistic) == pytest.approx(t_sm)
        assert result["p_ttest"] == pytest.approx(ttest.pvalue) == pytest.approx(p_sm)
        assert result["wilcoxon_w"] == wilcoxon.statistic
        assert result["p_wilcoxon"] == pytest.approx(wilcoxon.pvalue)
        d = a[keep] - b[keep]
        assert result["cohens_dz"] == pytest.approx(d.mean() / d.std(ddof=1))
        assert result["cohens_dz"] == pytest.approx(result["t"] / np.sqrt(n - 2))
        assert result["mean_diff"] == pytest.approx(a[keep].mean() - b[keep].mean())
        assert result["note"] == ""


def test_paired_test_degenerate_cases():
    x = np.array([0.1, 0.2, 0.3, 0.5])
    same = paired_test(x, x)
    assert same["note"] == "all differences zero"
    assert (same["t"], same["p_ttest"], same["cohens_dz"], same["p_wilcoxon"]) == (0.0, 1.0, 0.0, 1.0)
    shifted = paired_test(x + 0.25, x)  # constant non-zero differences
    assert shifted["note"] == "zero variance of differences"
    assert shifted["sd_diff"] == 0 and shifted["t"] == np.inf and shifted["cohens_dz"] == np.inf
    assert shifted["p_ttest"] == 0.0
    assert shifted["p_wilcoxon"] == pytest.approx(stats.wilcoxon(x + 0.25, x).pvalue)
    lower = paired_test(x, x + 0.25)
    assert lower["t"] == -np.inf and lower["cohens_dz"] == -np.inf
    one = paired_test(np.array([0.4, np.nan]), np.array([0.1, 0.3]))
    assert one["n_pairs"] == 1 and one["n_dropped"] == 1 and one["note"] == "one pair"
    assert np.isnan(one["t"]) and np.isnan(one["p_ttest"]) and np.isnan(one["cohens_dz"])
    assert one["p_wilcoxon"] == 1.0 and one["mean_diff"] == pytest.approx(0.3)
    none = paired_test(np.array([np.nan, 0.2]), np.array([0.1, np.nan]))
    assert none["n_pairs"] == 0 and none["n_dropped"] == 2 and none["note"] == "no pairs"
    assert np.isnan(none["mean_diff"]) and np.isnan(none["p_wilcoxon"])


def test_batched_paired_tests_equal_one_by_one():
    rng = np.random.default_rng(2)
    a = rng.beta(2, 6, (12, 139))
    b = np.clip(a + rng.normal(0.01, 0.1, a.shape), 0, 1)
    a[1, :5] = np.nan  # other pairs
    a[2, :100] = np.nan  # 39 pairs: scipy may go exact, tested alone
    b[3] = a[3]  # all differences zero
    b[4] = a[4] - 0.1  # constant up to rounding
    a[5], b[5] = np.round(a[5], 1), np.round(b[5], 1)  # ties and zeros
    considered = np.ones(a.shape, dtype=bool)
    considered[6, :10] = False
    batched = paired_tests(a, b, considered)
    for row in range(len(a)):
        expected = paired_test(a[row][considered[row]], b[row][considered[row]])
        got = batched.iloc[row].to_dict()
        assert got["note"] == expected["note"]
        for column, value in expected.items():
            if column != "note":
                assert got[column] == pytest.approx(value, nan_ok=True, rel=1e-12, abs=1e-15), (row, column)


def test_holm_matches_statsmodels_and_leaves_undefined_tests_out():
    gc.freeze()  # multipletests runs gc.collect() per call; frozen objects make it cheap
    rng = np.random.default_rng(4)
    for _ in range(100):
        p = rng.random(rng.integers(1, 25)) ** 3
        if rng.random() < 0.3:
            p = np.round(p, 2)  # ties
        reject, adjusted = multipletests(p, alpha=0.05, method="holm")[:2]
        ours, ours_reject = holm(p, 0.05)
        np.testing.assert_allclose(ours, adjusted, rtol=1e-12)
        np.testing.assert_array_equal(ours_reject, reject)
    p = np.array([0.01, np.nan, 0.04, 0.03])
    adjusted, reject = holm(p, 0.05)
    expected = multipletests([0.01, 0.04, 0.03], alpha=0.05, method="holm")
    np.testing.assert_allclose(adjusted[[0, 2, 3]], expected[1][[0, 1, 2]])
    assert np.isnan(adjusted[1]) and not reject[1]
    gc.unfreeze()


# ---- tables -------------------------------------------------------------------------------------
def alignment_rows(model, variant, method, layers, heads, thresholds, iou_of, images=20, seed=0,
                   unscorable=()):
    """Rows in the alignment contract; iou_of(layer, head, threshold, image index) -> IoU."""
    rng = np.random.default_rng(seed)
    rows = []
    for layer in layers:
        for head in heads:
            coverage = rng.random(images)
            hit = (rng.random(images) < 0.5).astype(float)
            for threshold in thresholds:
                for i in range(images):
                    ok = i not in unscorable
                    rows.append({"image_id": f"img{i:03d}", "model": model, "variant": variant,
                                 "method": method, "layer": layer, "head": head, "threshold": threshold,
                                 "iou": iou_of(layer, head, threshold, i) if ok else np.nan,
                                 "coverage": coverage[i] if ok else np.nan,
                                 "pointing_hit": hit[i] if ok else np.nan, "scorable": ok})
    return pd.DataFrame(rows)


def test_summary_counts_dropped_rows_and_matches_pandas():
    noise = np.random.default_rng(0).random(20)
    table = alignment_rows("m", "frozen", "cls", [0, 1], [-1, 0], [10.0, 30.0],
                           lambda layer, head, t, i: noise[i] * (layer + 1) / 3 + t / 1000, unscorable={2, 5})
    table.loc[7, "iou"] = np.nan  # a NaN score on a scorable row is dropped too
    summary = summarise_alignment(score_matrix(table), n_resamples=500)
    assert list(summary.columns) == ["model", "variant", "method", "layer", "head", "threshold", "metric",
                                     "n", "n_dropped", "mean", "ci_low", "ci_high", "small_n"]
    assert len(summary) == 2 * 2 * 2 * 3
    usable = table[table["scorable"]]
    for metric in ("iou", "coverage", "pointing_hit"):
        expected = usable.groupby(["layer", "head", "threshold"])[metric].agg(["mean", "count"])
        got = summary[summary["metric"] == metric].set_index(["layer", "head", "threshold"])
        np.testing.assert_allclose(got["mean"], expected["mean"])
        np.testing.assert_array_equal(got["n"], expected["count"])
        assert (got["n_dropped"] == 20 - got["n"]).all()
    first = summary[(summary["metric"] == "iou")].iloc[0]
    assert first["n"] == 17 and first["n_dropped"] == 3


def test_score_matrix_refuses_duplicate_rows():
    table = alignment_rows("m", "frozen", "cls", [0], [-1], [10.0], lambda *args: 0.5, images=3)
    with pytest.raises(ValueError, match="more than one row"):
        score_matrix(pd.concat([table, table.iloc[:1]]), source="t.parquet")
    with pytest.raises(ValueError, match="missing columns"):
        score_matrix(table.drop(columns="scorable"), source="t.parquet")
