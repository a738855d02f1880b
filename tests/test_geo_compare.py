"""Cross-model comparison statistics: CKA, McNemar, paired bootstrap, group breakdowns."""

import numpy as np
import pytest
from scipy import stats
from scipy.stats import ortho_group
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

from encoderlens.geo.compare import linear_cka, mcnemar_test, paired_bootstrap_difference
from encoderlens.stats.bootstrap import resample_generator
from encoderlens.stats.groups import group_summary, group_tests


def hsic_cka(x, y):
    """CKA from its definition: HSIC of the centred linear kernels (Kornblith et al. 2019, eq. 3)."""
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    k, l = x @ x.T, y @ y.T

    def hsic(a, b):
        return np.trace(a @ h @ b @ h) / (n - 1) ** 2

    return hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l))


@pytest.mark.parametrize("n, d1, d2", [(200, 16, 24), (30, 64, 48)])  # feature-space and Gram-space paths
def test_cka_equals_the_hsic_definition(n, d1, d2):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, d1))
    y = x[:, :min(d1, d2)] @ rng.normal(size=(min(d1, d2), d2)) + rng.normal(size=(n, d2))
    assert linear_cka(x, y) == pytest.approx(hsic_cka(x, y), rel=1e-10)
    assert 0.05 < linear_cka(x, y) < 0.99


def test_cka_known_values():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(500, 32)) @ np.diag(np.linspace(0.2, 3, 32))
    rotated = 3.7 * x @ ortho_group.rvs(32, random_state=2) + 5.0  # rotation, scaling, shift
    assert linear_cka(x, rotated) == pytest.approx(1.0, abs=1e-10)
    noise = rng.normal(size=(5000, 8))
    other = rng.normal(size=(5000, 8))
    assert linear_cka(noise, other) < 0.01  # expectation about d/n = 0.0016
    assert linear_cka(x, x[:, :16]) < 1.0
    assert np.isnan(linear_cka(np.ones((10, 3)), rng.normal(size=(10, 3))))
    with pytest.raises(ValueError, match="same images"):
        linear_cka(x, x[:100])


@pytest.mark.parametrize("only_a, only_b, both, neither", [(3, 9, 50, 10), (40, 20, 300, 50), (0, 0, 5, 5),
                                                           (12, 12, 1, 1)])
def test_mcnemar_matches_statsmodels(only_a, only_b, both, neither):
    a = np.array([True] * only_a + [False] * only_b + [True] * both + [False] * neither)
    b = np.array([False] * only_a + [True] * only_b + [True] * both + [False] * neither)
    ours = mcnemar_test(a, b)
    assert (ours["only_a_right"], ours["only_b_right"]) == (only_a, only_b)
    table = [[both, only_a], [only_b, neither]]
    if only_a + only_b == 0:
        assert ours["p_value"] == 1.0
        return
    exact = only_a + only_b < 25
    reference = mcnemar(table, exact=exact, correction=True)
    assert ours["test"] == ("exact" if exact else "chi2_corrected")
    assert ours["p_value"] == pytest.approx(reference.pvalue, rel=1e-12)
    assert ours["statistic"] == pytest.approx(reference.statistic, rel=1e-12)


def test_paired_bootstrap_matches_scipy_and_detects_a_shift():
    rng = np.random.default_rng(3)
    ids = [f"q{i}" for i in range(300)]
    a = rng.gamma(2.0, 1000.0, 300)
    b = a - 150 + rng.normal(0, 400, 300)
    a[5] = np.nan  # dropped pair
    ours = paired_bootstrap_difference(a, b, ids, n_resamples=2000, seed=7)
    kept = [i for i, keep in zip(ids, np.isfinite(a)) if keep]
    diff = (a - b)[np.isfinite(a)]
    reference = stats.bootstrap((diff,), np.mean, n_resamples=2000, method="percentile", vectorized=True,
                                random_state=resample_generator(7, kept))
    assert ours["n_pairs"] == 299 and ours["n_dropped"] == 1
    assert ours["mean_diff"] == pytest.approx(diff.mean())
    assert ours["ci_low"] == pytest.approx(reference.confidence_interval.low, rel=1e-9)
    assert ours["ci_high"] == pytest.approx(reference.confidence_interval.high, rel=1e-9)
    assert ours["p_bootstrap"] < 0.01
    null = paired_bootstrap_difference(a, a + rng.normal(0, 1, 300), ids, n_resamples=2000)
    assert null["p_bootstrap"] > 0.05


def test_group_breakdown_finds_the_planted_group_and_matches_references():
    rng = np.random.default_rng(4)
    groups = np.array(["EU"] * 80 + ["AF"] * 30 + ["OC"] * 40 + ["AN"] * 1, dtype=object)
    values = np.concatenate([rng.normal(0.8, 0.1, 80), rng.normal(0.4, 0.1, 30), rng.normal(0.78, 0.1, 40),
                             [0.5]])
    values[3] = np.nan
    summary = group_summary(values, groups, min_n=5, n_resamples=1000).set_index("group")
    assert summary.loc["EU", "n"] == 79 and summary.loc["EU", "n_dropped"] == 1
    assert summary.loc["AF", "share"] == pytest.approx(30 / 150)
    assert summary.loc["AN", "below_min_n"] and not summary.loc["OC", "below_min_n"]
    assert summary.loc["AF", "ci_high"] < summary.loc["EU", "ci_low"]
    overall, pairs = group_tests(values, groups, min_n=5)
    finite = np.isfinite(values)
    reference = stats.kruskal(*(values[finite & (groups == g)] for g in ("AF", "EU", "OC")))
    assert overall["n_groups"] == 3
    assert overall["p_kruskal"] == pytest.approx(reference.pvalue)
    assert set(zip(pairs["group_a"], pairs["group_b"])) == {("AF", "EU"), ("AF", "OC"), ("EU", "OC")}
    assert np.allclose(pairs["p_holm"], multipletests(pairs["p_value"], method="holm")[1])
    significant = pairs.set_index(["group_a", "group_b"])["reject_holm"]
    assert significant[("AF", "EU")] and significant[("AF", "OC")] and not significant[("EU", "OC")]
    af_eu = pairs.set_index(["group_a", "group_b"]).loc[("AF", "EU")]
    assert af_eu["rank_biserial"] < -0.9  # AF's scores lie below EU's


def test_group_tests_with_one_group_or_constant_scores():
    overall, pairs = group_tests(np.ones(10), np.array(["a"] * 5 + ["b"] * 5, dtype=object))
    assert np.isnan(overall["p_kruskal"]) and (pairs["p_value"] == 1.0).all()
    overall, pairs = group_tests(np.arange(6.0), np.array(["a"] * 6, dtype=object))
    assert overall["n_groups"] == 1 and pairs.empty


def test_chunked_group_interval_equals_scipy(monkeypatch):
    import encoderlens.stats.groups as groups

    rng = np.random.default_rng(5)
    values = rng.exponential(2.0, 501)
    ids = [f"r{i}" for i in range(501)]
    whole = groups.bootstrap_interval(values, ids, n_resamples=999, seed=3)
    monkeypatch.setattr(groups, "DRAWS_PER_CHUNK", 501 * 7)  # 7 resamples a chunk, 143 chunks
    chunked = groups.bootstrap_interval(values, ids, n_resamples=999, seed=3)
    reference = stats.bootstrap((values,), np.mean, n_resamples=999, method="percentile", vectorized=True,
                                random_state=resample_generator(3, ids)).confidence_interval
    assert chunked == whole
    assert whole == pytest.approx((reference.low, reference.high), rel=1e-12)
