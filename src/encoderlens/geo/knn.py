"""Geolocation by retrieval: each query image takes the location of its nearest gallery images.

Conventions:
- Similarity is cosine: gallery and queries are L2-normalised to float32 (`l2_normalise`) and searched
  exactly with `faiss.IndexFlatIP` (inner product; on unit vectors that is the cosine). Neighbours
  come best first; `neighbour_index` indexes the rows of the gallery as passed.
- Top-1 (`weighted=False`): the prediction is the location of the most similar gallery image (k
  neighbours are still returned, for analysis).
- Weighted top-k (`weighted=True`): the similarity-weighted mean location on the sphere. Each
  neighbour's (lat, lon) becomes a 3-D unit vector (`distance.latlon_to_unit`), the vectors are
  averaged with weights w_j = max(cos_j, 0) and the mean is converted back to (lat, lon). Unlike an
  average of degrees this is right across the antimeridian (179° and −179° average to 180°, not 0°)
  and near the poles. Where every weight is 0 or the weighted vectors cancel (neighbours spread
  evenly around the globe), the prediction falls back to the top-1 location.
- `split_gallery_queries` holds out a seeded random share of the images as queries; the rest is the
  gallery. faiss is imported on first use, so importing `encoderlens.geo` does not load it.
- Index (`KnnIndex`, config `geo.knn_index`): "exact" (IndexFlatIP, the default), "ivf" (IndexIVFFlat
  over an inner-product coarse quantiser: `nlist` k-means cells trained on a seeded sample of at most
  `IVF_TRAIN_PER_CELL` · nlist gallery rows, `nprobe` cells visited per query; nprobe = nlist visits
  every cell and is exact) or "hnsw" (IndexHNSWFlat, inner product, `hnsw_m` links, `ef_search`). The
  approximate indexes can miss true neighbours; with `nprobe` < nlist a query whose visited cells hold
  fewer than k rows is an error naming the settings. With faiss-gpu and a visible GPU, the exact and
  IVF indexes are moved to GPU 0 (HNSW has no GPU version in faiss).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import numpy as np

from .distance import check_latlon, latlon_to_unit, unit_to_latlon

# A weighted mean vector shorter than this (relative to the total weight) has no direction to trust.
_CANCELLED = 1e-9
INDEX_KINDS = ("exact", "ivf", "hnsw")
# IVF coarse quantiser: k-means on a sample of this many rows per cell (faiss warns below 39 and uses
# at most 256), IVF_TRAIN_ITERATIONS iterations (faiss's default 25 costs 2.5x for little recall)
IVF_TRAIN_PER_CELL = 40
IVF_TRAIN_ITERATIONS = 10


@dataclass(frozen=True)
class KnnIndex:
    """How the gallery is searched. kind: exact | ivf | hnsw. nlist None: about 4·sqrt(gallery rows)."""

    kind: str = "exact"
    nlist: int | None = None
    nprobe: int = 32
    hnsw_m: int = 32
    ef_search: int = 128
    ef_construction: int = 200
    seed: int = 0
    use_gpu: bool = True

    def __post_init__(self):
        if self.kind not in INDEX_KINDS:
            raise ValueError(f"geo.knn_index: unknown index {self.kind!r}; known: {', '.join(INDEX_KINDS)}")

    def cells(self, n: int) -> int:
        """nlist for a gallery of n rows (at most n: every cell needs a training point)."""
        wanted = self.nlist if self.nlist is not None else int(round(4 * math.sqrt(n)))
        return max(1, min(int(wanted), n))

    @classmethod
    def from_settings(cls, settings: dict | None) -> "KnnIndex":
        """From the retrieval params' `knn_index`, `knn_nlist`, `knn_nprobe`, `knn_hnsw_m`, `knn_ef_search`."""
        settings = settings or {}
        names = {"knn_index": "kind", "knn_nlist": "nlist", "knn_nprobe": "nprobe", "knn_hnsw_m": "hnsw_m",
                 "knn_ef_search": "ef_search", "seed": "seed"}
        return cls(**{field: settings[key] for key, field in names.items() if key in settings})


_GPU = []  # the one StandardGpuResources of this process, made on first use and kept alive


def _gpu_resources():
    import faiss

    if not _GPU:
        _GPU.append(faiss.StandardGpuResources())
    return _GPU[0]


def gpu_available() -> bool:
    """True when this faiss has GPU support (faiss-gpu) and sees a GPU."""
    import faiss

    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def l2_normalise(x) -> np.ndarray:
    """Rows of a (N, D) array scaled to unit L2 norm, as a new C-contiguous float32 array.

    Raises ValueError on a non-finite value or an all-zero row: neither has a direction.
    """
    array = np.array(x, dtype=np.float32, order="C", copy=True)
    if array.ndim != 2:
        raise ValueError(f"expected an (N, D) array of embeddings, got shape {array.shape}")
    # one float32 pass for the norms (a fifth of np.linalg.norm's time at 50,000 x 1,024); rows whose
    # squared norm under- or overflows float32 are redone in float64, so only a real zero or a
    # non-finite value is refused
    norm = np.sqrt(np.einsum("ij,ij->i", array, array))
    odd = np.flatnonzero(~np.isfinite(norm) | (norm == 0))
    if len(odd):
        norm[odd] = np.linalg.norm(array[odd].astype(np.float64), axis=1)
        finite = np.isfinite(array[odd]).all(axis=1)
        if not finite.all():
            raise ValueError(f"embedding row {int(odd[~finite][0])} has a non-finite value")
        if (norm[odd] == 0).any():
            raise ValueError(f"embedding row {int(odd[norm[odd] == 0][0])} is all zeros")
    array /= norm[:, None]
    return array


@contextlib.contextmanager
def faiss_threads(threads: int | None):
    """Run faiss with `threads` OpenMP threads inside the block (None: leave its setting alone)."""
    import faiss

    if threads is None:
        yield
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(int(threads))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def build_index(gallery, normalised: bool = False, spec: KnnIndex | None = None):
    """A cosine index over the gallery's L2-normalised rows: `faiss.IndexFlatIP` (exact), or the IVF
    or HNSW index of `spec` (module notes)."""
    import faiss

    spec = spec or KnnIndex()
    vectors = np.ascontiguousarray(gallery, dtype=np.float32) if normalised else l2_normalise(gallery)
    n, d = vectors.shape
    if spec.kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, spec.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = spec.ef_construction
        index.hnsw.efSearch = spec.ef_search
        index.add(vectors)
        return index
    if spec.kind == "exact":
        index = faiss.IndexFlatIP(d)
    else:
        nlist = spec.cells(n)
        quantiser = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantiser, d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = spec.seed
        index.cp.niter = IVF_TRAIN_ITERATIONS
        index.cp.min_points_per_centroid = 1  # small galleries: no warning, nlist is capped at n
        sample = min(n, IVF_TRAIN_PER_CELL * nlist)
        train = vectors if sample == n else vectors[np.sort(
            np.random.default_rng(spec.seed).choice(n, size=sample, replace=False))]
        index.train(train)
        index.nprobe = min(spec.nprobe, nlist)  # faiss's wrapper keeps the quantiser alive
    if spec.use_gpu and gpu_available():
        index = faiss.index_cpu_to_gpu(_gpu_resources(), 0, index)
    index.add(vectors)
    return index


def knn_search(gallery, queries, k: int = 1, threads: int | None = None,
               index: KnnIndex | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The k most cosine-similar gallery rows of each query: (index (Q, k) int64, cosine (Q, k) float32).

    `index` chooses exact (default) or approximate search (module notes)."""
    gallery_n, queries_n = l2_normalise(gallery), l2_normalise(queries)
    if gallery_n.shape[1] != queries_n.shape[1]:
        raise ValueError(f"gallery has {gallery_n.shape[1]} dimensions, queries {queries_n.shape[1]}")
    if not 1 <= k <= len(gallery_n):
        raise ValueError(f"k={k}: need 1 <= k <= gallery size ({len(gallery_n)})")
    spec = index or KnnIndex()
    with faiss_threads(threads):
        built = build_index(gallery_n, normalised=True, spec=spec)
        similarity, neighbours = built.search(queries_n, k)
    if (neighbours < 0).any():
        row = int(np.flatnonzero((neighbours < 0).any(axis=1))[0])
        raise ValueError(f"{spec.kind} index found fewer than k={k} neighbours for query {row} "
                         f"(nprobe={spec.nprobe} of nlist={spec.cells(len(gallery_n))} cells): raise "
                         f"geo.knn_nprobe or lower geo.knn_nlist")
    return neighbours.astype(np.int64, copy=False), similarity


def weighted_location(neighbour_latlon, similarity) -> np.ndarray:
    """Similarity-weighted mean location on the sphere of (Q, k, 2) neighbour locations → (Q, 2).

    Weights are max(similarity, 0); see the module notes for the fallback to the first neighbour.
    """
    latlon = np.asarray(neighbour_latlon, dtype=np.float64)
    weights = np.clip(np.asarray(similarity, dtype=np.float64), 0.0, None)
    n_queries, k = weights.shape
    if latlon.shape != (n_queries, k, 2):
        raise ValueError(f"neighbour_latlon {latlon.shape} does not match similarity {weights.shape}")
    if n_queries == 0:
        return np.empty((0, 2))
    unit = latlon_to_unit(latlon.reshape(-1, 2)).reshape(n_queries, k, 3)
    mean = np.einsum("qk,qkd->qd", weights, unit)
    total = weights.sum(axis=1)
    cancelled = np.linalg.norm(mean, axis=1) <= _CANCELLED * np.maximum(total, 1.0)
    mean[cancelled] = unit[cancelled, 0]
    predicted = unit_to_latlon(mean)
    # the top-1 location exactly, not its round trip through 3-D
    predicted[cancelled] = latlon[cancelled, 0]
    return predicted


def knn_geolocate(gallery, gallery_latlon, queries, k: int = 1, weighted: bool = False,
                  threads: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Geolocate queries by their cosine nearest neighbours in the gallery.

    Returns `pred_latlon` (Q, 2) degrees, `neighbour_index` (Q, k) into the gallery rows, best first,
    and `similarity` (Q, k) cosine. Top-1 location, or with `weighted` the similarity-weighted
    spherical mean of the k neighbours' locations.
    """
    gallery_latlon = check_latlon(gallery_latlon, "gallery_latlon")
    if len(gallery_latlon) != len(gallery):
        raise ValueError(f"{len(gallery)} gallery embeddings but {len(gallery_latlon)} locations")
    neighbours, similarity = knn_search(gallery, queries, k=k, threads=threads)
    if weighted and k > 1:
        pred = weighted_location(gallery_latlon[neighbours], similarity)
    else:
        pred = gallery_latlon[neighbours[:, 0]].copy()
    return pred, neighbours, similarity


def split_gallery_queries(n: int, query_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random split of rows 0..n-1: (gallery rows, query rows), each sorted ascending.

    round(n · query_fraction) rows are queries, at least one and leaving at least one in the gallery.
    """
    if n < 2:
        raise ValueError(f"need at least 2 rows to split into gallery and queries, got {n}")
    if not 0 < query_fraction < 1:
        raise ValueError(f"query_fraction must lie in (0, 1), got {query_fraction}")
    n_queries = min(max(int(round(n * query_fraction)), 1), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_queries:]), np.sort(order[:n_queries])
