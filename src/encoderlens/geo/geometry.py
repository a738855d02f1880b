"""Embedding geometry: does cosine similarity fall with distance on Earth, and how anisotropic is it?

Conventions:
- Pairs are unordered pairs of distinct images (i < j), drawn without replacement by `sample_pairs`
  from a seeded generator; when `n_pairs` reaches n(n−1)/2, every pair is used.
- Cosine is computed on L2-normalised embeddings (float64 accumulation), distance by `haversine_km`.
- `cosine_vs_distance`: Pearson and Spearman correlation (scipy.stats) of cosine with distance over
  the pairs, the cosine distribution (mean, std), and per distance bin the count, mean and std of the
  cosine. Bin b holds edges[b] <= d < edges[b+1]; the last bin also holds d == its upper edge. Pairs
  outside all bins are counted in `outside_bins`. Standard deviations are population (ddof=0);
  an empty bin has count 0 and NaN mean and std.
- `anisotropy`: the mean cosine over all pairs i != j (exact, from the sum of unit vectors, no
  sampling), and two summaries of the spectrum λ of the embeddings' covariance (as given, centred; pass
  `normalise=True` for the L2-normalised embeddings): the effective rank exp(H(p)), p = λ / Σλ, H
  the Shannon entropy in nats (Roy & Vetterli 2007), and the participation ratio (Σλ)² / Σλ². Both
  are D for isotropic data and 1 for data on one line.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from .distance import MAX_DISTANCE_KM, check_latlon, haversine_km

DEFAULT_DISTANCE_BINS_KM = (0.0, 1.0, 10.0, 100.0, 1000.0, 10000.0, MAX_DISTANCE_KM)
_CHUNK = 8192  # pairs whose embedding rows are gathered at once


def sample_pairs(n: int, n_pairs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`n_pairs` distinct unordered pairs (i < j) of rows 0..n-1, in random order; all pairs if fewer."""
    if n < 2:
        raise ValueError(f"need at least 2 rows to form a pair, got {n}")
    if n_pairs < 1:
        raise ValueError(f"n_pairs must be positive, got {n_pairs}")
    total = n * (n - 1) // 2
    rng = np.random.default_rng(seed)
    if n_pairs >= total:
        i, j = np.triu_indices(n, k=1)
        order = rng.permutation(total)
        return i[order].astype(np.int64), j[order].astype(np.int64)
    linear = rng.choice(total, size=n_pairs, replace=False).astype(np.int64)
    return _pair_from_linear(linear, n)


def _pair_from_linear(linear: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-major position in the strict upper triangle of an n x n matrix → (i, j), i < j."""
    def before(i):  # pairs in rows above row i
        return i * (2 * n - i - 1) // 2

    b = 2 * n - 1
    i = np.floor((b - np.sqrt(np.maximum(b * b - 8.0 * linear, 0.0))) / 2).astype(np.int64)
    i = np.clip(i, 0, n - 2)
    for _ in range(3):  # float rounding can leave i one off; settle it in integers
        i = np.where(before(i) > linear, i - 1, i)
        i = np.where((i + 1 <= n - 2) & (before(i + 1) <= linear), i + 1, i)
    j = linear - before(i) + i + 1
    return i, j


def pair_cosine(embeddings, i, j) -> np.ndarray:
    """Cosine similarity of embedding rows i[p] and j[p] for each pair p (float64).

    Only the rows the pairs name are read (in chunks of pairs), so the cost follows the number of
    pairs, not the number of rows."""
    x = np.asarray(embeddings)
    if x.ndim != 2:
        raise ValueError(f"expected an (N, D) array of embeddings, got shape {x.shape}")
    i, j = np.asarray(i, dtype=np.int64), np.asarray(j, dtype=np.int64)
    out = np.empty(len(i))
    for start in range(0, len(i), _CHUNK):
        a, b = i[start:start + _CHUNK], j[start:start + _CHUNK]
        rows_a, rows_b = x[a].astype(np.float64), x[b].astype(np.float64)
        norm_a, norm_b = np.linalg.norm(rows_a, axis=1), np.linalg.norm(rows_b, axis=1)
        for rows, norm in ((a, norm_a), (b, norm_b)):
            bad = (norm == 0) | ~np.isfinite(norm)
            if bad.any():
                raise ValueError(f"embedding row {int(rows[np.flatnonzero(bad)[0]])} is all zeros or not "
                                 f"finite: it has no cosine")
        out[start:start + _CHUNK] = np.einsum("pd,pd->p", rows_a, rows_b) / (norm_a * norm_b)
    return np.clip(out, -1.0, 1.0)


def pair_cosine_distance(embeddings, latlon, n_pairs: int = 100_000,
                         seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sampled pairs with their cosine and great-circle km: (i, j, cosine, distance_km)."""
    latlon = check_latlon(latlon)
    if len(latlon) != len(embeddings):
        raise ValueError(f"{len(embeddings)} embeddings but {len(latlon)} locations")
    i, j = sample_pairs(len(latlon), n_pairs, seed)
    distance = haversine_km(latlon[i, 0], latlon[i, 1], latlon[j, 0], latlon[j, 1])
    return i, j, pair_cosine(embeddings, i, j), distance


def binned_cosine(cosine, distance_km, bins_km: Sequence[float] = DEFAULT_DISTANCE_BINS_KM) -> pd.DataFrame:
    """Per distance bin: lo_km, hi_km, count, cosine_mean, cosine_std (see the module notes)."""
    edges = np.asarray(bins_km, dtype=np.float64)
    if edges.ndim != 1 or len(edges) < 2 or not (np.diff(edges) > 0).all():
        raise ValueError(f"bins_km must be at least two increasing edges, got {list(bins_km)}")
    cosine, distance = np.asarray(cosine, dtype=np.float64), np.asarray(distance_km, dtype=np.float64)
    which = np.searchsorted(edges, distance, side="right") - 1
    which[distance == edges[-1]] = len(edges) - 2
    rows = []
    for b in range(len(edges) - 1):
        values = cosine[which == b]
        rows.append({"lo_km": edges[b], "hi_km": edges[b + 1], "count": int(len(values)),
                     "cosine_mean": float(values.mean()) if len(values) else float("nan"),
                     "cosine_std": float(values.std()) if len(values) else float("nan")})
    return pd.DataFrame(rows)


def cosine_vs_distance(embeddings, latlon, n_pairs: int = 100_000, seed: int = 0,
                       bins_km: Sequence[float] = DEFAULT_DISTANCE_BINS_KM) -> dict:
    """How cosine similarity relates to great-circle distance over a seeded sample of pairs.

    Returns n_pairs, pearson_r, pearson_p, spearman_rho, spearman_p, cosine_mean, cosine_std,
    outside_bins, and `bins` (the `binned_cosine` table).
    """
    from scipy import stats

    _, _, cosine, distance = pair_cosine_distance(embeddings, latlon, n_pairs=n_pairs, seed=seed)
    bins = binned_cosine(cosine, distance, bins_km)
    if len(cosine) >= 2:
        pearson = stats.pearsonr(cosine, distance)
        spearman = stats.spearmanr(cosine, distance)
        pearson_r, pearson_p = float(pearson.statistic), float(pearson.pvalue)
        spearman_rho, spearman_p = float(spearman.statistic), float(spearman.pvalue)
    else:  # one pair has no correlation
        pearson_r = pearson_p = spearman_rho = spearman_p = float("nan")
    return {
        "n_pairs": int(len(cosine)),
        "pearson_r": pearson_r, "pearson_p": pearson_p,
        "spearman_rho": spearman_rho, "spearman_p": spearman_p,
        "cosine_mean": float(cosine.mean()), "cosine_std": float(cosine.std()),
        "outside_bins": int(len(cosine) - bins["count"].sum()),
        "bins": bins,
    }


def mean_pairwise_cosine(embeddings) -> float:
    """Mean cosine over all ordered pairs i != j, exactly: (|Σ u|² − N) / (N (N − 1)), u unit rows."""
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"need an (N, D) array with N >= 2, got shape {x.shape}")
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    if (norm == 0).any() or not np.isfinite(norm).all():
        raise ValueError("an embedding row is all zeros or not finite: it has no cosine")
    total = (x / norm).sum(axis=0)
    n = len(x)
    return float((total @ total - n) / (n * (n - 1)))


def covariance_spectrum(embeddings, normalise: bool = False) -> np.ndarray:
    """Eigenvalues of the (ddof=1) covariance of the embeddings, descending, negatives clipped to 0."""
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"need an (N, D) array with N >= 2, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("embeddings contain a non-finite value")
    if normalise:
        norm = np.linalg.norm(x, axis=1, keepdims=True)
        if (norm == 0).any():
            raise ValueError("an embedding row is all zeros: it cannot be normalised")
        x = x / norm
    x = x - x.mean(axis=0)
    # the non-zero eigenvalues of XᵀX and XXᵀ agree: take the smaller matrix
    gram = x.T @ x if x.shape[0] >= x.shape[1] else x @ x.T
    eigenvalues = np.linalg.eigvalsh(gram / (len(x) - 1))[::-1]
    return np.clip(eigenvalues, 0.0, None)


def effective_rank(eigenvalues) -> float:
    """exp of the Shannon entropy (nats) of the eigenvalues normalised to sum to 1."""
    p = _spectrum_shares(eigenvalues)
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


def participation_ratio(eigenvalues) -> float:
    """(Σλ)² / Σλ²."""
    p = _spectrum_shares(eigenvalues)
    return float(1.0 / (p * p).sum())


def _spectrum_shares(eigenvalues) -> np.ndarray:
    values = np.asarray(eigenvalues, dtype=np.float64)
    if values.ndim != 1 or (values < 0).any() or not np.isfinite(values).all():
        raise ValueError("eigenvalues must be a 1-D array of finite, non-negative values")
    total = values.sum()
    if total <= 0:
        raise ValueError("the spectrum is all zeros: the embeddings do not vary")
    return values / total


def anisotropy(embeddings, normalise: bool = False) -> dict[str, float | int]:
    """mean_pairwise_cosine, effective_rank and participation_ratio of the embeddings, with n and dim."""
    eigenvalues = covariance_spectrum(embeddings, normalise=normalise)
    x = np.asarray(embeddings)
    return {
        "n": int(x.shape[0]), "dim": int(x.shape[1]),
        "mean_pairwise_cosine": mean_pairwise_cosine(x),
        "effective_rank": effective_rank(eigenvalues),
        "participation_ratio": participation_ratio(eigenvalues),
    }
