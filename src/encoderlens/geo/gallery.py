"""Retrieval galleries: a representative sample stratified by place and environment, or a random one.

`representative_gallery` picks `size` images so that every (cell, land_cover, climate, soil) group is
represented, and inside a group the picks spread over what the images look like:

1. Groups. Rows with equal values in `group_columns` form a group. A missing key (NaN, None) is a
   group value of its own, the same one for NaN and None; the empty string "" is another, distinct
   value. Groups are ordered by first appearance in `table`.
2. Quotas (how many images each group gives), for G groups of sizes s_g, n images in all:
   - size >= n: every image.
   - G <= size < n: one image per group, then the R = size − G others by largest remainder in
     proportion to each group's remaining images s_g − 1 (R·(s_g − 1)/(n − G) each, floors first,
     then one more to the largest fractional parts). No quota exceeds its group: R <= n − G.
   - size < G: one image to each of the `size` largest groups.
   Ties (equal remainders, equal sizes) go to the larger group, then in a seeded random order.
3. Clusters. A group whose quota is below its size is split by k-means on its embeddings (sklearn
   KMeans, random_state from the seed, N_INIT restarts) into k = min(s_g, distinct embeddings,
   n_clusters(s_g, quota)) clusters: "sqrt" gives ceil(sqrt(s_g)), "quota" gives the quota itself
   (one pick per cluster), or pass any function of (group size, quota).
4. Round robin. Clusters are visited largest first (ties in seeded random order); each visit takes
   the next image of the cluster, whose members are in seeded random order. So every cluster gives one
   image before any gives a second, and a quota below k is spent on the largest clusters.

Embeddings are used as given (normalise them first if cosine geometry is meant). The result is the
sorted row positions (iloc, not index labels) of the gallery. Every random choice of group g comes from
its own generator, spawned from `seed`, so the same seed gives the same gallery.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_limits

GROUP_COLUMNS = ("cell", "land_cover", "climate", "soil")
N_INIT = 4
CLUSTER_COUNTS: dict[str, Callable[[int, int], int]] = {
    "sqrt": lambda size, quota: math.ceil(math.sqrt(size)),
    "quota": lambda size, quota: quota,
}
# (label, smallest, largest) group sizes; None: no upper bound
SIZE_BINS = (("1", 1, 1), ("2-3", 2, 3), ("4-10", 4, 10), ("11-20", 11, 20), ("21-50", 21, 50),
             ("51-100", 51, 100), ("101-150", 101, 150), (">150", 151, None))


def representative_gallery(table: pd.DataFrame, embeddings: np.ndarray, size: int, seed: int = 0,
                           group_columns: Sequence[str] = GROUP_COLUMNS,
                           n_clusters: str | Callable[[int, int], int] = "sqrt") -> np.ndarray:
    """Sorted row positions of a `size`-image gallery, stratified as the module doc describes."""
    embeddings = np.asarray(embeddings)
    if len(embeddings) != len(table):
        raise ValueError(f"{len(embeddings)} embeddings for {len(table)} rows")
    if size < 0:
        raise ValueError(f"gallery size must be >= 0, got {size}")
    count_clusters = CLUSTER_COUNTS[n_clusters] if isinstance(n_clusters, str) else n_clusters
    if size >= len(table):
        return np.arange(len(table))
    groups = group_rows(table, group_columns)
    seeds = np.random.SeedSequence(seed).spawn(len(groups) + 1)
    quotas = group_quotas(np.array([len(rows) for rows in groups]), size, np.random.default_rng(seeds[-1]))
    picks = []
    # One OpenMP thread: groups are small, so starting threads costs ~20x the k-means itself, and the
    # clusters (float sums split over threads) then do not depend on the machine's core count.
    with threadpool_limits(limits=1):
        for rows, quota, group_seed in zip(groups, quotas, seeds):
            if quota == len(rows):
                picks.append(rows)
            elif quota:
                rng = np.random.default_rng(group_seed)
                k = min(len(rows), count_clusters(len(rows), int(quota)))
                labels = _cluster(embeddings[rows], k, rng)
                picks.append(rows[round_robin(labels, int(quota), rng)])
    return np.sort(np.concatenate([np.empty(0, dtype=np.int64), *picks]))


def random_gallery(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Sorted positions of `size` of `n` images drawn uniformly without replacement (all if size >= n)."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=min(size, n), replace=False))


def group_size_histogram(table: pd.DataFrame, group_columns: Sequence[str] = GROUP_COLUMNS) -> pd.DataFrame:
    """Groups and images per group-size bin (1, 2-3, 4-10, ..., >150), every bin listed."""
    sizes = np.array([len(rows) for rows in group_rows(table, group_columns)], dtype=np.int64)
    records = []
    for label, low, high in SIZE_BINS:
        inside = (sizes >= low) & (sizes <= (high if high is not None else np.inf))
        records.append({"bin": label, "n_groups": int(inside.sum()), "n_images": int(sizes[inside].sum())})
    return pd.DataFrame(records)


def group_rows(table: pd.DataFrame, group_columns: Sequence[str]) -> list[np.ndarray]:
    """Row positions of each group, groups in order of first appearance (missing keys kept, see doc)."""
    if not group_columns:
        raise ValueError("no group columns given")
    if not len(table):
        return []
    # factorize with use_na_sentinel=False gives NaN/None a code of their own instead of dropping them
    codes = np.stack([pd.factorize(table[column], use_na_sentinel=False)[0]
                      for column in group_columns], axis=1)
    _, first, inverse = np.unique(codes, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first)                     # np.unique sorts by code; restore appearance order
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    group_of_row = rank[inverse.ravel()]
    by_group = np.argsort(group_of_row, kind="stable")
    return np.split(by_group, np.cumsum(np.bincount(group_of_row))[:-1])


def group_quotas(sizes: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Images per group for a `size`-image gallery (the allocation in the module doc)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    n, n_groups = int(sizes.sum()), len(sizes)
    if size >= n:
        return sizes.copy()
    tiebreak = rng.permutation(n_groups)
    if size < n_groups:
        quotas = np.zeros(n_groups, dtype=np.int64)
        # lexsort: last key first; the largest groups, ties in the seeded order
        quotas[np.lexsort((tiebreak, -sizes))[:size]] = 1
        return quotas
    # integer arithmetic, so that equal remainders are equal and the tie rule decides between them
    numerators, denominator = (size - n_groups) * (sizes - 1), n - n_groups
    quotas = 1 + numerators // denominator
    left = size - int(quotas.sum())
    quotas[np.lexsort((tiebreak, -sizes, -(numerators % denominator)))[:left]] += 1
    return quotas


def round_robin(labels: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` positions into `labels`: one per cluster per round, clusters largest first (module doc)."""
    clusters = np.unique(labels)
    sizes = np.array([(labels == cluster).sum() for cluster in clusters])
    visit = clusters[np.lexsort((rng.permutation(len(clusters)), -sizes))]
    members = [rng.permutation(np.flatnonzero(labels == cluster)) for cluster in visit]
    picks = [queue[round_] for round_ in range(max(sizes)) for queue in members if round_ < len(queue)]
    return np.array(picks[:count], dtype=np.int64)


def _cluster(vectors: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means labels; fewer clusters where there are fewer distinct vectors (KMeans would warn)."""
    k = min(k, len(np.unique(vectors, axis=0)))
    if k <= 1:
        return np.zeros(len(vectors), dtype=np.int64)
    model = KMeans(n_clusters=k, n_init=N_INIT, random_state=int(rng.integers(2**31 - 1)))
    return model.fit_predict(vectors)
