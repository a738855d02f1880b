"""GeoNames candidates for each place mention: MiniLM embeddings searched in a faiss index.

The index holds one vector per distinct name (case-folded), so a name shared by many places
("Douglas") is one vector and a top-k of names is never filled by copies of one string. A search
returns the `k` nearest names; each is expanded to every place bearing it, and the places are ranked
by similarity, then population, and cut to the top `k` candidates. Similarity is the cosine: vectors
are L2-normalised and the index is `faiss.IndexFlat(d, faiss.METRIC_INNER_PRODUCT)` (exact search).

Each distinct mention string is embedded once. A mention spelled exactly as an indexed name (every
gazetteer mention is one) takes that name's stored vector instead of a second pass through the
model: the same string gives the same vector.

Every indexed name's own top `cached_neighbours` names are searched once, when the index is built,
and stored: a mention spelled as an indexed name (every gazetteer mention) then reads its neighbours
from that table instead of searching again. It is the same exact search, done ahead of time, so the
answer is the one a search would give; mentions of other spellings are searched at query time.

Files of an index folder: `names.parquet` (the name table of `names.py` plus `vector`, the row of
the name's vector), `vectors.npy` (float32, one row per distinct name), `index.faiss`,
`neighbours.npy` (int64) and `neighbour_similarity.npy` (float32), one row per distinct name,
`meta.json`.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from encoderlens.tables import atomic_folder, write_table

log = logging.getLogger(__name__)

CANDIDATE_COLUMNS = ["image_id", "mention", "rank", "name", "place_name", "kind", "cc", "population",
                     "geonameid", "similarity"]


def inner_product_index(vectors: np.ndarray):
    import faiss

    index = faiss.IndexFlat(vectors.shape[1], faiss.METRIC_INNER_PRODUCT)
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def build_name_index(names: pd.DataFrame, encode, folder, meta: dict | None = None,
                     cached_neighbours: int = 16, threads: int | None = None) -> dict:
    """Embed the distinct names of `names` with `encode` and write the index folder atomically."""
    from encoderlens.geo.knn import faiss_threads

    import faiss

    folder = Path(folder)
    keys = names["name"].str.casefold()
    distinct = ~keys.duplicated()
    strings = names.loc[distinct, "name"].tolist()
    row_of_key = {key: row for row, key in enumerate(keys[distinct])}
    started = time.perf_counter()
    vectors = encode(strings)
    seconds = time.perf_counter() - started
    log.info("embedded %d distinct names in %.1f s", len(strings), seconds)
    table = names.assign(vector=keys.map(row_of_key).astype("int64"))
    with atomic_folder(folder) as tmp:
        write_table(table, tmp / "names.parquet")
        np.save(tmp / "vectors.npy", vectors)
        index = inner_product_index(vectors)
        faiss.write_index(index, str(tmp / "index.faiss"))
        started = time.perf_counter()
        k = min(cached_neighbours, len(strings))
        with faiss_threads(threads):
            similarity, neighbours = index.search(np.ascontiguousarray(vectors, dtype=np.float32), k)
        np.save(tmp / "neighbours.npy", neighbours.astype(np.int64))
        np.save(tmp / "neighbour_similarity.npy", similarity.astype(np.float32))
        search_seconds = time.perf_counter() - started
        log.info("searched the neighbours of %d names in %.1f s", len(strings), search_seconds)
        info = dict(meta or {}) | {"names": len(table), "distinct_names": len(strings),
                                   "dimension": int(vectors.shape[1]), "embed_seconds": seconds,
                                   "cached_neighbours": k, "neighbour_seconds": search_seconds}
        (tmp / "meta.json").write_text(json.dumps(info, indent=2))
    return info


class NameIndex:
    def __init__(self, folder):
        import faiss

        folder = Path(folder)
        for name in ("names.parquet", "vectors.npy", "index.faiss", "neighbours.npy",
                     "neighbour_similarity.npy"):
            if not (folder / name).is_file():
                raise FileNotFoundError(f"{folder / name}: missing; rebuild the place-name index")
        self.names = pd.read_parquet(folder / "names.parquet")
        self.vectors = np.load(folder / "vectors.npy")
        self.index = faiss.read_index(str(folder / "index.faiss"))
        self.cached_neighbours = np.load(folder / "neighbours.npy")
        self.cached_similarity = np.load(folder / "neighbour_similarity.npy")
        if self.index.ntotal != len(self.vectors):
            raise ValueError(f"{folder}: index holds {self.index.ntotal} vectors, vectors.npy "
                             f"{len(self.vectors)}")
        distinct = self.names.drop_duplicates("vector")
        self.vector_of = dict(zip(distinct["name"], distinct["vector"]))
        # the places bearing each name, larger first (so that ties rank the larger place first), as
        # slices of one ordering: places of vector v are self._order[self._start[v]:self._start[v + 1]]
        self._order = np.lexsort((-self.names["population"].to_numpy(), self.names["vector"].to_numpy()))
        counts = np.bincount(self.names["vector"].to_numpy(), minlength=len(self.vectors))
        self._start = np.concatenate([[0], np.cumsum(counts)])
        self._population = self.names["population"].to_numpy()

    def query_vectors(self, mentions: list[str], encode) -> np.ndarray:
        """A vector per mention: the stored one for an indexed spelling, else encoded."""
        vectors = np.empty((len(mentions), self.vectors.shape[1]), dtype=np.float32)
        unseen = [i for i, m in enumerate(mentions) if m not in self.vector_of]
        for i, mention in enumerate(mentions):
            if mention in self.vector_of:
                vectors[i] = self.vectors[self.vector_of[mention]]
        if unseen:
            vectors[unseen] = encode([mentions[i] for i in unseen])
        return vectors

    def search(self, mentions: list[str], encode, k: int = 10, threads: int | None = None):
        """For each mention, its top-k candidate places as a table (mention, rank, ...)."""
        from encoderlens.geo.knn import faiss_threads

        columns = [c for c in CANDIDATE_COLUMNS if c != "image_id"]
        if not mentions:
            return pd.DataFrame(columns=columns)
        k_names = min(k, self.index.ntotal)
        similarity = np.empty((len(mentions), k_names), dtype=np.float32)
        neighbours = np.empty((len(mentions), k_names), dtype=np.int64)
        own = np.array([self.vector_of.get(m, -1) for m in mentions], dtype=np.int64)
        cached = (own >= 0) if k_names <= self.cached_neighbours.shape[1] else np.zeros(len(own), bool)
        similarity[cached] = self.cached_similarity[own[cached], :k_names]
        neighbours[cached] = self.cached_neighbours[own[cached], :k_names]
        if (~cached).any():
            todo = [m for m, c in zip(mentions, cached) if not c]
            with faiss_threads(threads):
                found_sim, found_rows = self.index.search(self.query_vectors(todo, encode), k_names)
            similarity[~cached], neighbours[~cached] = found_sim, found_rows
        mention_of, row_of, sim_of, rank_of = [], [], [], []
        for i, (sims, vectors_found) in enumerate(zip(similarity, neighbours)):
            found = [(self._order[self._start[v]:self._start[v + 1]], sim)
                     for sim, v in zip(sims, vectors_found) if v >= 0]
            rows = np.concatenate([rows for rows, _ in found])
            sims_rows = np.concatenate([np.full(len(rows), sim) for rows, sim in found])
            best = np.lexsort((-self._population[rows], -sims_rows))[:k]
            mention_of.append(np.full(len(best), i))
            row_of.append(rows[best])
            sim_of.append(sims_rows[best])
            rank_of.append(np.arange(1, len(best) + 1))
        table = self.names.iloc[np.concatenate(row_of)].reset_index(drop=True)
        table["mention"] = np.asarray(mentions, dtype=object)[np.concatenate(mention_of)]
        table["rank"] = np.concatenate(rank_of)
        table["similarity"] = np.concatenate(sim_of).astype(np.float64)
        return table[columns]


def retrieve_candidates(mentions: pd.DataFrame, index: NameIndex, encode, k: int = 10,
                        threads: int | None = None) -> pd.DataFrame:
    """Top-k candidates of every mention row (CANDIDATE_COLUMNS); each distinct string searched once."""
    distinct = sorted(set(mentions["mention"]))
    found = index.search(distinct, encode, k, threads)
    table = mentions[["image_id", "mention"]].drop_duplicates().merge(found, on="mention", how="inner")
    table = table.sort_values(["image_id", "mention", "rank"], kind="stable").reset_index(drop=True)
    return table[CANDIDATE_COLUMNS].astype({"rank": "int64", "population": "int64",
                                            "geonameid": "int64", "similarity": "float64"})


class LazyEncoder:
    """An encoder loaded on first use: retrieval of gazetteer mentions, which are all indexed
    spellings, never needs the model (nor torch)."""

    def __init__(self, factory):
        self.factory, self.encoder = factory, None

    def __call__(self, texts):
        if self.encoder is None:
            self.encoder = self.factory()
        return self.encoder(texts)
