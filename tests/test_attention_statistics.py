"""Attention concentration statistics: closed forms, a hand case, scipy cross-checks, attention.h5, groups."""

import math

import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.stats

from encoderlens.attention.statistics import (COLUMNS, aggregate, attention_statistics,
                                              statistics_from_h5)


def one(frame):
    assert len(frame) == 1
    return frame.iloc[0]


def gini_by_pairs(p):
    """Gini as the mean absolute difference over all ordered pairs, / (2 · mean): no sorting involved."""
    p = np.asarray(p, dtype=np.float64).ravel()
    return np.abs(p[:, None] - p[None, :]).sum() / (2 * len(p) ** 2 * p.mean())


@pytest.mark.parametrize("grid", [(2, 2), (5, 6), (16, 16), (37, 37)])
def test_uniform_map(grid):
    gh, gw = grid
    n_patches = gh * gw
    row = one(attention_statistics(np.full((1, gh, gw), 0.0013, dtype=np.float16)))
    assert row["entropy"] == pytest.approx(math.log(n_patches), rel=1e-12)
    assert row["entropy_norm"] == pytest.approx(1.0, rel=1e-12)
    assert row["gini"] == pytest.approx(0.0, abs=1e-12)
    # k = ceil(P / 10) patches: 1 of 4, 3 of 30, 26 of 256, 137 of 1369
    assert row["top10_mass"] == pytest.approx(math.ceil(n_patches / 10) / n_patches, rel=1e-12)
    assert row["n_above_mean"] == 0
    assert (row["n_patches"], row["grid_h"], row["grid_w"]) == (n_patches, gh, gw)
    assert row["scorable"]


@pytest.mark.parametrize("grid", [(2, 2), (4, 4), (16, 16)])
def test_one_hot_map(grid):
    gh, gw = grid
    n_patches = gh * gw
    maps = np.zeros((1, gh, gw))
    maps[0, gh - 1, 0] = 0.4
    row = one(attention_statistics(maps))
    assert row["entropy"] == 0 and row["entropy_norm"] == 0
    assert row["top10_mass"] == pytest.approx(1.0)
    assert row["n_above_mean"] == 1
    # the population Gini (no small-sample correction) of a one-hot map is (P - 1) / P, not 1
    assert row["gini"] == pytest.approx((n_patches - 1) / n_patches, rel=1e-12)
    assert row["gini"] == pytest.approx(gini_by_pairs(maps), rel=1e-12)


def test_hand_computed_case():
    # p = (0.1, 0.2, 0.3, 0.4) after renormalisation; the raw row sums to 10, not 1
    row = one(attention_statistics(np.array([[[1.0, 2.0], [3.0, 4.0]]])))
    entropy = -(0.1 * math.log(0.1) + 0.2 * math.log(0.2) + 0.3 * math.log(0.3) + 0.4 * math.log(0.4))
    assert row["entropy"] == pytest.approx(entropy, rel=1e-12)
    assert row["entropy_norm"] == pytest.approx(entropy / math.log(4), rel=1e-12)
    assert row["top10_mass"] == pytest.approx(0.4)          # k = ceil(0.4) = 1 patch
    assert row["n_above_mean"] == 2                          # 0.3 and 0.4 exceed 0.25
    # 2 (1·0.1 + 2·0.2 + 3·0.3 + 4·0.4) / 4 - 5/4 = 1.5 - 1.25; pairwise: 2.0 / (2·4·1)
    assert row["gini"] == pytest.approx(0.25, rel=1e-12)


def test_random_maps_against_scipy_and_pairwise_gini():
    rng = np.random.default_rng(0)
    maps = (rng.random((20, 7, 9)) ** 4).astype(np.float16)
    frame = attention_statistics(maps, image_ids=[f"img{i}" for i in range(20)], layer=5)
    assert list(frame.columns) == list(COLUMNS)
    assert frame["image_id"].tolist() == [f"img{i}" for i in range(20)]
    assert (frame["layer"] == 5).all() and frame["scorable"].all()
    for row, raw in zip(frame.itertuples(), maps.astype(np.float64)):
        p = raw.ravel() / raw.sum()
        assert row.entropy == pytest.approx(scipy.stats.entropy(raw.ravel()), rel=1e-12)
        assert row.entropy_norm == pytest.approx(scipy.stats.entropy(p, base=63), rel=1e-12)
        assert row.gini == pytest.approx(gini_by_pairs(raw), rel=1e-10)
        assert row.top10_mass == pytest.approx(np.sort(p)[-7:].sum(), rel=1e-12)  # ceil(6.3) = 7
        assert row.n_above_mean == (p > 1 / 63).sum()


def test_heads_are_averaged_before_renormalising():
    rng = np.random.default_rng(1)
    heads = rng.random((3, 4, 5, 5)).astype(np.float16)
    by_head = attention_statistics(heads)
    averaged = attention_statistics(heads.astype(np.float64).mean(axis=1))
    pd.testing.assert_frame_equal(by_head, averaged, rtol=1e-12)
    # the mean over heads, not one head's statistics
    assert not np.allclose(by_head["entropy"], attention_statistics(heads[:, 0])["entropy"])


@pytest.mark.parametrize("bad", [0.0, np.nan, np.inf, -1.0])
def test_maps_without_a_distribution_are_flagged(bad):
    maps = np.ones((3, 4, 4))
    if bad == 0.0:
        maps[1] = 0.0
    else:
        maps[1, 2, 3] = bad
    frame = attention_statistics(maps)
    assert frame["scorable"].tolist() == [True, False, True]
    assert frame.loc[1, ["entropy", "entropy_norm", "top10_mass", "n_above_mean", "gini"]].isna().all()
    assert frame.loc[1, "n_patches"] == 16
    assert frame.loc[[0, 2], "entropy"].tolist() == pytest.approx([math.log(16)] * 2)


def test_rejects_bad_shapes():
    with pytest.raises(ValueError, match="shape"):
        attention_statistics(np.ones((4, 4)))
    with pytest.raises(ValueError, match="2 patches"):
        attention_statistics(np.ones((2, 1, 1)))
    with pytest.raises(ValueError, match="image ids"):
        attention_statistics(np.ones((2, 3, 3)), image_ids=["a"])


# ---- attention.h5 -------------------------------------------------------------------------------------
KEPT = [3, 7, 11]


def write_attention_h5(path, cls, ids):
    """A minimal attention.h5 following the contract: /ids utf-8, /cls (N, L, H, gh, gw) float16, /layers."""
    with h5py.File(path, "w") as handle:
        handle.create_dataset("ids", data=np.array(ids, dtype=object), dtype=h5py.string_dtype("utf-8"))
        handle.create_dataset("cls", data=cls.astype(np.float16), chunks=(1, *cls.shape[1:]),
                              compression="gzip")
        handle.create_dataset("layers", data=np.array(KEPT, dtype=np.int64))


@pytest.fixture
def attention_h5(tmp_path):
    rng = np.random.default_rng(2)
    # raw CLS rows: softmax over prefix + patches, so the patch part sums to less than 1
    cls = (rng.random((5, len(KEPT), 4, 3, 4)) ** 3 / 20).astype(np.float16)
    cls[3, 2] = 0  # image 3 puts all its last-layer attention on prefix tokens
    ids = ["a", "NA", "b", "c", "d"]
    path = tmp_path / "attention.h5"
    write_attention_h5(path, cls, ids)
    return path, cls, ids


def test_h5_last_layer_matches_the_arrays(attention_h5):
    path, cls, ids = attention_h5
    frame = statistics_from_h5(path, batch_size=2)
    expected = attention_statistics(cls[:, -1], image_ids=ids, layer=11)
    pd.testing.assert_frame_equal(frame, expected)
    assert frame["scorable"].tolist() == [True, True, True, False, True]
    assert statistics_from_h5(path, layers=11).equals(frame)


def test_h5_all_layers_image_major(attention_h5):
    path, cls, ids = attention_h5
    frame = statistics_from_h5(path, layers="all", batch_size=2)
    assert list(frame.columns) == list(COLUMNS)
    assert frame["image_id"].tolist() == [i for i in ids for _ in KEPT]
    assert frame["layer"].tolist() == KEPT * len(ids)
    for position, layer in enumerate(KEPT):
        expected = attention_statistics(cls[:, position], image_ids=ids, layer=layer)
        pd.testing.assert_frame_equal(frame[frame["layer"] == layer].reset_index(drop=True), expected)
    some = statistics_from_h5(path, layers=[7, 3])
    assert some["layer"].tolist() == [7, 3] * len(ids)


def test_h5_rejects_unkept_layers_and_missing_cls(attention_h5, tmp_path):
    path, _, _ = attention_h5
    with pytest.raises(ValueError, match="not kept"):
        statistics_from_h5(path, layers=[5])
    with pytest.raises(ValueError, match="layers must be"):
        statistics_from_h5(path, layers="first")
    empty = tmp_path / "siglip.h5"
    with h5py.File(empty, "w") as handle:
        handle.create_dataset("ids", data=np.array(["x"], dtype=object), dtype=h5py.string_dtype("utf-8"))
    with pytest.raises(KeyError, match="no /cls"):
        statistics_from_h5(empty)


# ---- aggregation --------------------------------------------------------------------------------------
def test_aggregate_per_country_keeps_namibia(attention_h5, tmp_path):
    path, _, ids = attention_h5
    labels_csv = tmp_path / "labels.csv"
    pd.DataFrame({"image_id": ids, "country": ["NA", "NA", "DE", "DE", "FR"]}).to_csv(labels_csv, index=False)
    labels = pd.read_csv(labels_csv, keep_default_na=False, dtype=str)
    stats = statistics_from_h5(path)

    table = aggregate(stats, by="country", labels=labels).set_index("country")
    assert sorted(table.index) == ["DE", "FR", "NA"]
    assert table.loc["NA", "count"] == 2 and table.loc["NA", "n_unscorable"] == 0
    assert table.loc["DE", "count"] == 1 and table.loc["DE", "n_unscorable"] == 1  # image c is unscorable
    namibia = stats[stats["image_id"].isin(["a", "NA"])]
    assert table.loc["NA", "entropy_mean"] == pytest.approx(namibia["entropy"].mean())
    assert table.loc["NA", "gini_std"] == pytest.approx(namibia["gini"].std(ddof=1))
    assert table.loc["DE", "entropy_mean"] == pytest.approx(stats.loc[2, "entropy"])
    assert np.isnan(table.loc["FR", "entropy_std"])  # one image: no spread

    per_layer = aggregate(statistics_from_h5(path, layers="all"), by=["country", "layer"], labels=labels)
    assert len(per_layer) == 3 * len(KEPT)
    assert per_layer.set_index(["country", "layer"]).loc[("DE", 11), "count"] == 1
    assert per_layer.set_index(["country", "layer"]).loc[("DE", 3), "count"] == 2


def test_aggregate_needs_labels_for_every_image(attention_h5):
    path, _, ids = attention_h5
    stats = statistics_from_h5(path)
    with pytest.raises(ValueError, match="no labels"):
        aggregate(stats, by="country")
    with pytest.raises(ValueError, match="no image_id"):
        aggregate(stats, labels=pd.DataFrame({"image_id": ids[:3], "country": ["A"] * 3}))
    by_layer = aggregate(stats, by="layer")
    assert by_layer["count"].tolist() == [4] and by_layer["n_unscorable"].tolist() == [1]
