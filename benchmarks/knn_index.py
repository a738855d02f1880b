"""Approximate kNN (geo.knn_index ivf / hnsw) against exact search, side by side in one run.

Workload: a clustered synthetic gallery like real embeddings (Zipf-sized Gaussian clusters in a
low-rank subspace plus isotropic noise, float32), each cluster a place on Earth (a random centre,
members within ~30 km of it), and queries drawn the same way. Each index is built and searched by
the library (`encoderlens.geo.knn.build_index` / `knn_search`'s index), timed separately for build
and search; recall@10 is the share of the exact top-10 the index returns; GeoScore is computed from
each method's top-1 neighbour (the `top1` method of `knn_study`) and compared with exact's.
Target (issue 16): at 1,000,000 x 768 with 10,000 queries on 2 cores, recall@10 >= 0.95 at >= 10x
exact search's speed, GeoScore within 1%.

    nice python benchmarks/knn_index.py --gallery 1000000 --queries 10000
    nice python benchmarks/knn_index.py --gallery 100000 --queries 2000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

import numpy as np

from encoderlens.geo.distance import geoscore, haversine_latlon
from encoderlens.geo.knn import KnnIndex, build_index, faiss_threads, l2_normalise


def make_data(gallery: int, queries: int, dim: int, clusters: int, seed: int):
    rng = np.random.default_rng(seed)
    latent = 64
    centres = rng.normal(size=(clusters, latent)).astype(np.float32)
    sizes = 1.0 / np.arange(1, clusters + 1) ** 0.8
    sizes /= sizes.sum()
    mixing = rng.normal(size=(latent, dim)).astype(np.float32) / np.sqrt(latent)
    places = np.column_stack([np.degrees(np.arcsin(rng.uniform(-1, 1, clusters))), rng.uniform(-180, 180, clusters)])

    def draw(n):
        members = rng.choice(clusters, size=n, p=sizes)
        out = np.empty((n, dim), dtype=np.float32)
        for start in range(0, n, 50_000):
            m = members[start:start + 50_000]
            z = centres[m] + 0.6 * rng.normal(size=(len(m), latent)).astype(np.float32)
            out[start:start + len(m)] = z @ mixing + 0.3 * rng.normal(size=(len(m), dim)).astype(np.float32)
        jitter = rng.normal(size=(n, 2)) * 0.25  # ~30 km
        latlon = places[members] + jitter
        latlon[:, 0] = np.clip(latlon[:, 0], -90, 90)
        latlon[:, 1] = (latlon[:, 1] + 180) % 360 - 180
        return out, latlon

    g, g_latlon = draw(gallery)
    q, q_latlon = draw(queries)
    return g, g_latlon, q, q_latlon


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gallery", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--clusters", type=int, default=2000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--nprobe", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--ef-search", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--skip-hnsw", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    t0 = time.perf_counter()
    gallery, g_latlon, queries, q_latlon = make_data(args.gallery, args.queries, args.dim, args.clusters, args.seed)
    gallery, queries = l2_normalise(gallery), l2_normalise(queries)
    result = {"gallery": args.gallery, "queries": args.queries, "dim": args.dim, "clusters": args.clusters,
              "k": args.k, "threads": args.threads, "data_s": round(time.perf_counter() - t0, 1),
              "load_before": os.getloadavg(), "runs": []}

    def run(name, spec):
        with faiss_threads(args.threads):
            t0 = time.perf_counter()
            index = build_index(gallery, normalised=True, spec=spec)
            build = time.perf_counter() - t0
            t0 = time.perf_counter()
            similarity, neighbours = index.search(queries, args.k)
            search = time.perf_counter() - t0
        del index
        return {"name": name, "build_s": round(build, 2), "search_s": round(search, 2)}, neighbours

    exact, exact_nb = run("exact", KnnIndex("exact"))
    exact_geo = geoscore(haversine_latlon(g_latlon[exact_nb[:, 0]], q_latlon))
    exact["recall_at_k"] = 1.0
    exact["geoscore"] = float(exact_geo.mean())
    result["runs"].append(exact)
    print(json.dumps(exact), flush=True)
    # one IVF index and one HNSW graph, each searched at several settings (the build is timed once)
    families = [("ivf", KnnIndex("ivf", nprobe=max(args.nprobe), seed=args.seed), "nprobe", args.nprobe)]
    if not args.skip_hnsw:
        families.append(("hnsw", KnnIndex("hnsw", ef_search=max(args.ef_search)), "efSearch", args.ef_search))
    for kind, spec, knob, settings in families:
        with faiss_threads(args.threads):
            t0 = time.perf_counter()
            index = build_index(gallery, normalised=True, spec=spec)
            build = round(time.perf_counter() - t0, 2)
        for value in settings:
            if kind == "ivf":
                index.nprobe = value
            else:
                index.hnsw.efSearch = value
            with faiss_threads(args.threads):
                t0 = time.perf_counter()
                _, neighbours = index.search(queries, args.k)
                search = round(time.perf_counter() - t0, 2)
            row = {"name": f"{kind} {knob}={value}", "build_s": build, "search_s": search}
            if kind == "ivf":
                row["nlist"] = spec.cells(args.gallery)
            hits = [len(set(a) & set(b)) for a, b in zip(neighbours, exact_nb)]
            row["recall_at_k"] = round(float(np.mean(hits)) / args.k, 4)
            row["speedup_search"] = round(exact["search_s"] / max(search, 1e-9), 1)
            approx_geo = float(geoscore(haversine_latlon(g_latlon[neighbours[:, 0]], q_latlon)).mean())
            row["geoscore"] = approx_geo
            row["geoscore_rel_diff"] = round(abs(approx_geo - exact["geoscore"]) / exact["geoscore"], 5)
            row["load"] = os.getloadavg()[0]
            result["runs"].append(row)
            print(json.dumps(row), flush=True)
        del index
    result["peak_rss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    result["load_after"] = os.getloadavg()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
