"""Diversity: the Vendi score (Friedman & Dieng 2023) of embeddings per entity x country.

VS(X) = exp(-sum_i lambda_i log lambda_i), lambda_i the eigenvalues of K / n, K the cosine-similarity
matrix of the n rows (rows L2-normalised, K = X X^T). It ranges from 1 (all items alike) to n (all
orthogonal): the effective number of distinct items. Computed from the eigenvalues of the smaller of
X X^T / n and X^T X / n (they share their non-zero eigenvalues), so a group of 50,000 images costs a
D x D eigendecomposition. Tiny negative eigenvalues from rounding are dropped.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

DIVERSITY_COLUMNS = ["entity", "country", "n", "vendi_image", "vendi_caption"]


def vendi_score(vectors) -> float:
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"expected a non-empty (n, d) array, got shape {x.shape}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if (norms == 0).any() or not np.isfinite(x).all():
        raise ValueError("every row needs a finite, non-zero vector")
    x = x / norms
    n = len(x)
    gram = x @ x.T if n <= x.shape[1] else x.T @ x
    eigenvalues = np.linalg.eigvalsh(gram / n)
    eigenvalues = eigenvalues[eigenvalues > 1e-12]
    return float(np.exp(-np.sum(eigenvalues * np.log(eigenvalues))))


def diversity_table(predictions: pd.DataFrame, image_vectors: dict[str, np.ndarray],
                    caption_vectors: dict[str, np.ndarray], min_items: int = 5,
                    include_unknown: bool = False) -> pd.DataFrame:
    """Vendi of image and caption embeddings per (entity, predicted country) with >= min_items
    captions; entity "all" pools the entities. A caption without an image (or without an image
    embedding) counts only for the caption score; `n` is the number of captions."""
    named = predictions[predictions["entity"] != ""]
    groups = [("all", named.drop_duplicates("image_id"))] + list(named.groupby("entity", sort=True))
    rows = []
    for entity, group in groups:
        for country, members in group.groupby("country_pred", sort=True):
            if len(members) < min_items or (country == "Unknown" and not include_unknown):
                continue
            ids = members["image_id"].tolist()
            images = [image_vectors[i] for i in ids if i in image_vectors]
            captions = [caption_vectors[i] for i in ids if i in caption_vectors]
            rows.append((entity, country, len(ids),
                         vendi_score(np.stack(images)) if len(images) >= min_items else np.nan,
                         vendi_score(np.stack(captions)) if len(captions) >= min_items else np.nan))
    return pd.DataFrame(rows, columns=DIVERSITY_COLUMNS).astype({"n": "int64"})
