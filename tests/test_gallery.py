"""Gallery sampling: quotas per group, round robin over k-means clusters, determinism, histogram."""

import warnings

import numpy as np
import pandas as pd
import pytest

from encoderlens.geo.gallery import (group_quotas, group_rows, group_size_histogram, random_gallery,
                                     representative_gallery)

COLUMNS = ["cell", "land_cover", "climate", "soil"]


def random_table(n, seed=0):
    rng = np.random.default_rng(seed)
    table = pd.DataFrame({column: rng.choice(list("ab") if column != "cell" else list("pqrst"), n)
                          for column in COLUMNS})
    return table, rng.normal(size=(n, 8)).astype(np.float32)


def group_of(table, columns=COLUMNS):
    labels = np.empty(len(table), dtype=np.int64)
    for group, rows in enumerate(group_rows(table, columns)):
        labels[rows] = group
    return labels


def test_deterministic_per_seed_and_different_across_seeds():
    table, embeddings = random_table(300)
    first = representative_gallery(table, embeddings, 60, seed=0)
    assert np.array_equal(first, representative_gallery(table, embeddings, 60, seed=0))
    assert not np.array_equal(first, representative_gallery(table, embeddings, 60, seed=1))
    assert np.array_equal(random_gallery(300, 60, seed=3), random_gallery(300, 60, seed=3))
    assert not np.array_equal(random_gallery(300, 60, seed=3), random_gallery(300, 60, seed=4))


@pytest.mark.parametrize("size", [0, 1, 5, 39, 40, 41, 100, 299, 300, 301, 1000])
def test_size_is_the_target_or_everything(size):
    table, embeddings = random_table(300)
    gallery = representative_gallery(table, embeddings, size, seed=2)
    assert len(gallery) == min(size, 300)
    assert len(np.unique(gallery)) == len(gallery) and np.all(np.diff(gallery) > 0)
    assert gallery.min(initial=0) >= 0 and gallery.max(initial=0) < 300
    n_groups = len(group_rows(table, COLUMNS))  # 5 cells x 2 x 2 x 2 = 40 when every one occurs
    covered = len(np.unique(group_of(table)[gallery]))
    assert covered == min(size, n_groups)  # one per group wherever the size allows
    random = random_gallery(300, size, seed=2)
    assert len(random) == min(size, 300) and len(np.unique(random)) == len(random)


def test_quotas_hand_case():
    rng = np.random.default_rng(0)
    # one each, then R = 2 over remaining images (0, 2, 5) of 7: exact (0, 4/7, 10/7),
    # floors (0, 0, 1), the last image to the largest remainder 4/7
    assert group_quotas(np.array([1, 3, 6]), 5, rng).tolist() == [1, 2, 2]
    assert group_quotas(np.array([1, 3, 6]), 3, rng).tolist() == [1, 1, 1]
    assert group_quotas(np.array([1, 3, 6]), 9, rng).tolist() == [1, 3, 5]
    assert group_quotas(np.array([1, 3, 6]), 12, rng).tolist() == [1, 3, 6]
    # fewer images than groups: the largest groups, one each
    assert group_quotas(np.array([5, 1, 3, 2]), 2, rng).tolist() == [1, 0, 1, 0]
    # equal remainders: R = 2 over remaining (1, 3, 0) of 4 gives (2/4, 6/4, 0); 1/2 = 1/2, larger wins
    for seed in range(10):
        assert group_quotas(np.array([2, 4, 1]), 5, np.random.default_rng(seed)).tolist() == [1, 3, 1]
    # equal remainders and equal sizes: the seeded order decides, both ways over a few seeds
    ties = {tuple(group_quotas(np.array([3, 3, 1]), 4, np.random.default_rng(seed))) for seed in range(20)}
    assert ties == {(2, 1, 1), (1, 2, 1)}
    ties = {tuple(group_quotas(np.array([2, 2, 1]), 1, np.random.default_rng(seed))) for seed in range(20)}
    assert ties == {(1, 0, 0), (0, 1, 0)}


def test_quotas_never_exceed_groups_and_sum_to_the_size():
    rng = np.random.default_rng(5)
    for _ in range(200):
        sizes = rng.integers(1, 30, size=rng.integers(1, 15))
        size = int(rng.integers(0, sizes.sum() + 3))
        quotas = group_quotas(sizes, size, rng)
        assert quotas.sum() == min(size, sizes.sum())
        assert np.all(quotas <= sizes) and np.all(quotas >= 0)
        if size >= len(sizes):
            assert np.all(quotas >= 1)


def test_gallery_follows_the_quotas():
    table = pd.DataFrame({"cell": ["u"] * 1 + ["v"] * 3 + ["w"] * 6, "land_cover": "x", "climate": "y",
                          "soil": "z"})
    embeddings = np.random.default_rng(0).normal(size=(10, 4))
    for seed in range(5):
        gallery = representative_gallery(table, embeddings, 5, seed=seed)
        assert table["cell"].iloc[gallery].value_counts().to_dict() == {"u": 1, "v": 2, "w": 2}


PLANTED_SIZES = (3, 5, 6, 8)


def planted_clusters():
    """One group holding four tight, far-apart clusters of sizes 3, 5, 6, 8."""
    rng = np.random.default_rng(7)
    centres = np.array([[0, 0], [100, 0], [0, 100], [100, 100]], dtype=float)
    cluster = np.repeat(np.arange(4), PLANTED_SIZES)
    embeddings = centres[cluster] + rng.normal(scale=0.5, size=(len(cluster), 2))
    order = rng.permutation(len(cluster))  # not sorted by cluster in the table
    table = pd.DataFrame({"cell": "c", "land_cover": "l", "climate": "k", "soil": "s"}, index=range(22))
    return table, embeddings[order], cluster[order]


def round_robin_counts(size):
    """Picks per planted cluster when the largest cluster is visited first, one image per visit."""
    counts = [0] * len(PLANTED_SIZES)
    visit = sorted(range(len(PLANTED_SIZES)), key=lambda c: -PLANTED_SIZES[c])
    while size:
        for c in visit:
            if size and counts[c] < PLANTED_SIZES[c]:
                counts[c] += 1
                size -= 1
    return counts


@pytest.mark.parametrize("size", range(1, 23))
def test_round_robin_covers_every_cluster_before_repeating(size):
    table, embeddings, cluster = planted_clusters()
    for seed in (0, 1):
        gallery = representative_gallery(table, embeddings, size, seed=seed,
                                         n_clusters=lambda group_size, quota: 4)
        counts = np.bincount(cluster[gallery], minlength=4).tolist()
        assert counts == round_robin_counts(size)


def test_quota_many_clusters_gives_one_pick_per_planted_cluster():
    table, embeddings, cluster = planted_clusters()
    gallery = representative_gallery(table, embeddings, 4, seed=3, n_clusters="quota")
    assert sorted(cluster[gallery]) == [0, 1, 2, 3]


def test_duplicate_embeddings_do_not_break_kmeans():
    table = pd.DataFrame({"cell": ["a"] * 12, "land_cover": "", "climate": "", "soil": ""})
    embeddings = np.repeat(np.eye(3)[:2], 6, axis=0)  # two distinct vectors, ceil(sqrt(12)) = 4 clusters
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gallery = representative_gallery(table, embeddings, 2, seed=0)
    assert sorted(embeddings[gallery, 0]) == [0.0, 1.0]


def test_missing_and_empty_keys_are_groups_of_their_own():
    table = pd.DataFrame({"cell": ["x", np.nan, None, "", "x", "", "NA"],
                          "land_cover": ["f"] * 7, "climate": ["c"] * 7, "soil": ["s"] * 7})
    groups = [rows.tolist() for rows in group_rows(table, COLUMNS)]
    assert groups == [[0, 4], [1, 2], [3, 5], [6]]  # NaN and None together, "" apart, "NA" a country
    gallery = representative_gallery(table, np.random.default_rng(0).normal(size=(7, 3)), 4, seed=0)
    assert sorted(group_of(table)[gallery]) == [0, 1, 2, 3]
    numeric = pd.DataFrame({"cell": [1.0, np.nan, 1.0, np.nan]})
    assert [rows.tolist() for rows in group_rows(numeric, ["cell"])] == [[0, 2], [1, 3]]


def test_histogram_hand_case():
    sizes = [1, 1, 2, 3, 4, 10, 11, 20, 21, 50, 51, 100, 101, 150, 151, 400]
    table = pd.DataFrame({"cell": np.repeat([f"g{i}" for i in range(len(sizes))], sizes),
                          "land_cover": "", "climate": "", "soil": ""})
    histogram = group_size_histogram(table)
    assert histogram["bin"].tolist() == ["1", "2-3", "4-10", "11-20", "21-50", "51-100", "101-150", ">150"]
    assert histogram["n_groups"].tolist() == [2, 2, 2, 2, 2, 2, 2, 2]
    assert histogram["n_images"].tolist() == [2, 5, 14, 31, 71, 151, 251, 551]
    just_cells = group_size_histogram(table.assign(cell="one"), group_columns=["cell"])
    assert just_cells["n_groups"].tolist() == [0] * 7 + [1]
    empty = group_size_histogram(table.iloc[:0])
    assert empty["n_groups"].sum() == 0 and len(empty) == 8


def test_rejects_mismatched_embeddings():
    table, embeddings = random_table(10)
    with pytest.raises(ValueError, match="embeddings"):
        representative_gallery(table, embeddings[:9], 3)
