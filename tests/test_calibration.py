"""The target curve of distance-calibrated fine-tuning and the collapse report."""

import numpy as np
import pandas as pd
import pytest

from encoderlens.geo.calibration import bin_centres_km, collapse_report, fit_target_curve
from encoderlens.geo.geometry import binned_cosine


def test_bin_centres_are_geometric_means_with_one_km_for_zero():
    assert bin_centres_km([0, 100], [25, 400]).tolist() == pytest.approx([5.0, 200.0])


def test_a_decreasing_binned_curve_is_kept_and_interpolated_in_log_distance():
    bins = pd.DataFrame({"lo_km": [0, 100, 1000], "hi_km": [100, 1000, 10000], "count": [5, 5, 5],
                         "cosine_mean": [0.9, 0.6, 0.3]})
    curve = fit_target_curve(bins)
    assert curve.cosine.tolist() == pytest.approx([0.9, 0.6, 0.3])
    assert curve(curve.distance_km).tolist() == pytest.approx([0.9, 0.6, 0.3])
    # halfway between two knots in log(1 + d)
    x = (np.log1p(curve.distance_km[0]) + np.log1p(curve.distance_km[1])) / 2
    assert curve(np.expm1(x)) == pytest.approx(0.75)
    # flat beyond the outer knots
    assert curve([0.0, 20000.0]).tolist() == pytest.approx([0.9, 0.3])


def test_an_increase_is_pooled_by_count_weights_and_empty_bins_are_ignored():
    bins = pd.DataFrame({"lo_km": [0, 10, 100, 1000], "hi_km": [10, 100, 1000, 10000],
                         "count": [3, 1, 0, 2], "cosine_mean": [0.5, 0.9, np.nan, 0.1]})
    curve = fit_target_curve(bins)
    assert len(curve.distance_km) == 3
    # pool-adjacent-violators: (3·0.5 + 1·0.9) / 4 = 0.6 for the first two bins
    assert curve.cosine.tolist() == pytest.approx([0.6, 0.6, 0.1])
    assert (np.diff(curve(np.geomspace(1, 20000, 50))) <= 1e-12).all()


def test_no_pairs_in_any_bin_is_an_error():
    bins = pd.DataFrame({"lo_km": [0.0], "hi_km": [10.0], "count": [0], "cosine_mean": [np.nan]})
    with pytest.raises(ValueError, match="no distance bin"):
        fit_target_curve(bins)


def test_the_curve_fits_the_binned_means_of_real_pairs():
    rng = np.random.default_rng(0)
    distance = rng.uniform(0, 5000, 4000)
    cosine = 0.8 - 0.1 * np.log1p(distance) / np.log1p(5000) * 5 + rng.normal(0, 0.02, distance.size)
    bins = binned_cosine(cosine, distance, [0, 10, 100, 1000, 5000])
    curve = fit_target_curve(bins)
    assert curve.cosine.tolist() == pytest.approx(bins["cosine_mean"].tolist())  # already decreasing


def test_collapse_report_tells_a_collapsed_set_from_a_spread_one():
    rng = np.random.default_rng(1)
    spread = rng.normal(size=(200, 16))
    collapsed = np.ones((200, 16)) + 1e-3 * rng.normal(size=(200, 16))
    a, b = collapse_report(spread), collapse_report(collapsed)
    assert a["effective_rank"] > 12 and a["mean_pairwise_cosine"] == pytest.approx(0, abs=0.05)
    assert b["embedding_std"] < 0.01 < a["embedding_std"]
    assert b["mean_pairwise_cosine"] > 0.99


def _metrics(**overrides):
    base = {"geoscore": 1000.0, "median_km": 900.0, "pearson_r": -0.1, "spearman_rho": -0.12,
            "embedding_std": 0.2, "effective_rank": 10.0, "participation_ratio": 6.0,
            "mean_pairwise_cosine": 0.3}
    return base | overrides


def test_calibration_summary_reports_changes_and_flags_collapse():
    from encoderlens.geo.calibration import calibration_summary

    table = calibration_summary(_metrics(), _metrics(geoscore=1500.0, spearman_rho=-0.4)).set_index("metric")
    assert table.loc["geoscore", "change"] == pytest.approx(500.0)
    assert table.loc["spearman_rho", "calibrated"] == pytest.approx(-0.4)
    assert not table["collapse"].any()
    collapsed = calibration_summary(_metrics(), _metrics(effective_rank=4.0))
    assert collapsed["collapse"].all()


def test_atomic_folder_replaces_on_success_and_leaves_nothing_on_failure(tmp_path):
    from encoderlens.tables import atomic_folder

    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with atomic_folder(target) as staging:
        (staging / "new.txt").write_text("new")
        assert not (target / "new.txt").exists()  # nothing visible before the block ends
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    with pytest.raises(RuntimeError):
        with atomic_folder(target) as staging:
            (staging / "half.txt").write_text("half")
            raise RuntimeError("killed")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
