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

A mention the index does not hold (an LLM's spelling, a misspelling, another case or punctuation)
is also matched by spelling, since MiniLM embeds word pieces by meaning: a misspelling that breaks a
rare name into other pieces ("Christchurh", "Nambia") lands near unrelated names. With
`orthographic` on (the default), such a mention's candidate names are its `k` nearest by MiniLM
together with its ORTHOGRAPHIC_POOL nearest by character trigrams (TF-IDF, `analyzer="char_wb"`),
and every one of them is scored by the larger of its cosine and its spelling similarity,
1 - d / max(len), d the optimal-string-alignment (restricted Damerau-Levenshtein) distance. Both
compare the gazetteer's normal forms (accents stripped, case folded, punctuation a space: the
mention "Ain Abid" is the name "'Ain Abid"). One typo, dropped letter or transposition in
"Christchurch" scores 1 - 1/12 = 0.917. The names with the best scores are expanded to places as
above. A name near in spelling thus wins when the semantic match is poor, and a good semantic match
(an alternate spelling MiniLM knows) keeps its cosine. Indexed spellings (almost every gazetteer
mention) keep their exact answer and cost nothing more; the trigram matrix is built on first need
(about a second for 140,000 names).

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
# names taken by character-trigram similarity per unindexed mention, before rescoring by spelling
ORTHOGRAPHIC_POOL = 64
_PAIRS_PER_CHUNK = 16_384


def osa_distance(a, b) -> np.ndarray:
    """Optimal string alignment distance between a[i] and b[i] (Damerau-Levenshtein where no
    substring is edited twice): insertions, deletions, substitutions and transpositions of adjacent
    letters cost 1. All pairs at once, in groups of one length of a[i] and similar lengths of b[i]:
    one NumPy pass per letter of a[i], each row's insertions resolved by a running minimum
    (D[i, j] = j + min over j' <= j of (T[i, j'] - j'))."""
    a, b = [str(x) for x in a], [str(x) for x in b]
    if len(a) != len(b):
        raise ValueError(f"osa_distance: {len(a)} strings against {len(b)}")
    la = np.array([len(x) for x in a], dtype=np.int64)
    lb = np.array([len(x) for x in b], dtype=np.int64)
    distances = lb.copy()  # an empty a[i]: len(b[i]) insertions
    order = np.lexsort((lb, la))
    order = order[la[order] > 0]
    group = la[order] * 1_000_000 + lb[order] // 8  # one length of a, lengths of b within 8
    bounds = np.flatnonzero(np.diff(group)) + 1
    for part in np.split(order, bounds):
        for begin in range(0, len(part), _PAIRS_PER_CHUNK):
            rows = part[begin:begin + _PAIRS_PER_CHUNK]
            distances[rows] = _osa_group([a[i] for i in rows], [b[i] for i in rows], lb[rows])
    return distances


def _codes(strings: list[str], lengths: np.ndarray, width: int, pad: int) -> np.ndarray:
    """The strings' code points, one row each, padded with `pad` to `width`."""
    codes = np.full((len(strings), max(width, 1)), pad, dtype=np.int32)
    flat = np.frombuffer("".join(strings).encode("utf-32-le", "surrogatepass"), dtype=np.int32)
    codes[np.arange(codes.shape[1]) < lengths[:, None]] = flat  # row-major: the strings in turn
    return codes


def _osa_group(a: list[str], b: list[str], lb: np.ndarray) -> np.ndarray:
    """The distances of pairs whose a-strings all have one length."""
    n, la = len(a), len(a[0])
    A = _codes(a, np.full(n, la), la, -1)  # different pads never match (cells past a length are unused)
    B = _codes(b, lb, int(lb.max()), -2)
    columns = np.arange(B.shape[1] + 1, dtype=np.int32)
    before, previous = None, np.broadcast_to(columns, (n, len(columns))).copy()
    for i in range(1, la + 1):
        current = np.empty_like(previous)
        current[:, 0] = i
        substitution = previous[:, :-1] + (A[:, i - 1, None] != B)
        current[:, 1:] = np.minimum(previous[:, 1:] + 1, substitution)
        if i > 1:
            swapped = (A[:, i - 1, None] == B[:, :-1]) & (A[:, i - 2, None] == B[:, 1:])
            current[:, 2:] = np.where(swapped, np.minimum(current[:, 2:], before[:, :-2] + 1),
                                      current[:, 2:])
        current = np.minimum.accumulate(current - columns, axis=1) + columns
        before, previous = previous, current
    return previous[np.arange(n), lb]


def spelling_similarity(a, b, folded: bool = False) -> np.ndarray:
    """1 - osa_distance / max(len) of the strings' normal forms (accents stripped, case folded,
    punctuation a space; 1 for identical); `folded`: the strings are normal forms already."""
    from .gazetteer import normal_form

    if not folded:
        a, b = [normal_form(x) for x in a], [normal_form(x) for x in b]
    longest = np.maximum([len(x) for x in a], [len(x) for x in b]) if len(a) else np.zeros(0)
    return 1.0 - osa_distance(a, b) / np.maximum(longest, 1)


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
        self.strings = distinct.sort_values("vector")["name"].tolist()  # the name of each vector row
        self._trigrams, self._folded = None, None

    def trigram_candidates(self, folded: list[str], pool: int = ORTHOGRAPHIC_POOL) -> list[np.ndarray]:
        """For each folded mention, the vector rows of (up to) `pool` names sharing the most
        character trigrams with it (TF-IDF cosine of the normal forms)."""
        from sklearn.feature_extraction.text import TfidfVectorizer

        from .gazetteer import normal_form

        if self._trigrams is None:
            started = time.perf_counter()
            self._folded = [normal_form(s) for s in self.strings]
            vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 3), lowercase=False,
                                         dtype=np.float32)
            matrix = vectorizer.fit_transform(self._folded)
            self._trigrams = (vectorizer, matrix.T.tocsr())
            log.info("character-trigram matrix of %d names in %.1f s", len(self.strings),
                     time.perf_counter() - started)
        vectorizer, transposed = self._trigrams
        found = []
        for begin in range(0, len(folded), 256):
            scores = (vectorizer.transform(folded[begin:begin + 256]) @ transposed).tocsr()
            for row in range(scores.shape[0]):
                lo, hi = scores.indptr[row], scores.indptr[row + 1]
                values, columns = scores.data[lo:hi], scores.indices[lo:hi]
                if len(values) > pool:
                    columns = columns[np.argpartition(-values, pool)[:pool]]
                found.append(columns.astype(np.int64))
        return found

    def _respelled(self, mentions: list[str], vectors: np.ndarray, semantic: list[np.ndarray],
                   k_names: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """(vector rows, scores) of the best `k_names` names per mention among its semantic
        neighbours and trigram candidates, scored by max(cosine, spelling similarity)."""
        from .gazetteer import normal_form

        folded = [normal_form(m) for m in mentions]
        pools = self.trigram_candidates(folded)
        union = [np.unique(np.concatenate([own, extra])) for own, extra in zip(semantic, pools)]
        sizes = [len(u) for u in union]
        flat = np.concatenate(union) if union else np.zeros(0, np.int64)
        spelling = spelling_similarity(np.repeat(np.asarray(folded, dtype=object), sizes),
                                       [self._folded[v] for v in flat], folded=True)
        result, begin = [], 0
        for i, rows in enumerate(union):
            cosine = self.vectors[rows] @ vectors[i]
            score = np.maximum(cosine, spelling[begin:begin + len(rows)])
            begin += len(rows)
            best = np.lexsort((rows, -score))[:k_names]
            result.append((rows[best], score[best]))
        return result

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

    def search(self, mentions: list[str], encode, k: int = 10, threads: int | None = None,
               orthographic: bool = True):
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
            query = self.query_vectors(todo, encode)
            with faiss_threads(threads):
                found_sim, found_rows = self.index.search(query, k_names)
            similarity[~cached], neighbours[~cached] = found_sim, found_rows
        found = [(rows[rows >= 0], sims[rows >= 0]) for sims, rows in zip(similarity, neighbours)]
        unindexed = np.flatnonzero(own < 0)  # never cached: their query vectors are in `query`
        if orthographic and len(unindexed):
            position = np.flatnonzero(~cached)
            at = {mention_row: i for i, mention_row in enumerate(position)}
            rescored = self._respelled([mentions[i] for i in unindexed],
                                       query[[at[i] for i in unindexed]],
                                       [found[i][0] for i in unindexed], k_names)
            for i, pair in zip(unindexed, rescored):
                found[i] = pair
        mention_of, row_of, sim_of, rank_of = [], [], [], []
        for i, (vectors_found, sims) in enumerate(found):
            places = [(self._order[self._start[v]:self._start[v + 1]], sim)
                      for sim, v in zip(sims, vectors_found)]
            rows = np.concatenate([rows for rows, _ in places])
            sims_rows = np.concatenate([np.full(len(rows), sim) for rows, sim in places])
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
                        threads: int | None = None, orthographic: bool = True) -> pd.DataFrame:
    """Top-k candidates of every mention row (CANDIDATE_COLUMNS); each distinct string searched once;
    `orthographic`: unindexed spellings are also matched by spelling (see the module notes)."""
    distinct = sorted(set(mentions["mention"]))
    found = index.search(distinct, encode, k, threads, orthographic)
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
