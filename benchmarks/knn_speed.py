"""kNN geolocation speed: exact cosine search of 10,000 queries in a 40,000-image gallery, 1,024-d.

Workload: float32 Gaussian embeddings (generated once, not timed). Each timed run is the library call
`encoderlens.geo.knn_search` from raw embeddings: L2-normalise gallery and queries, build the
`faiss.IndexFlatIP`, search k neighbours. Runs alternate k = 1 and k = 10, `--repeats` times each;
the JSON reports every wall time, the median and the minimum, and the process CPU time of each run
(on a shared machine, wall > CPU / threads shows that other processes took the cores). A brute-force numpy check on the first
`--check` queries confirms the neighbours are the exact ones (outside the timing).
Target: < 5 s per search on 2 CPU cores. The search is one (Q x D) x (D x G) float32 product,
2·Q·G·D = 8.2e11 flops at the default sizes, so it is bound by the BLAS faiss ships with.

    python benchmarks/knn_speed.py
    python benchmarks/knn_speed.py --queries 2000 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np

from encoderlens.geo import knn_search, l2_normalise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gallery", type=int, default=40_000)
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="faiss OpenMP threads (default: its own)")
    parser.add_argument("--check", type=int, default=200, help="queries checked against numpy brute force")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import faiss

    rng = np.random.default_rng(args.seed)
    gallery = rng.standard_normal((args.gallery, args.dim), dtype=np.float32)
    queries = rng.standard_normal((args.queries, args.dim), dtype=np.float32)

    times: dict[int, list[float]] = {k: [] for k in args.ks}
    cpu_times: dict[int, list[float]] = {k: [] for k in args.ks}
    results = {}
    for _ in range(args.repeats):
        for k in args.ks:
            start, start_cpu = time.perf_counter(), time.process_time()
            results[k] = knn_search(gallery, queries, k=k, threads=args.threads)
            times[k].append(time.perf_counter() - start)
            cpu_times[k].append(time.process_time() - start_cpu)

    # exactness, untimed: the brute-force cosine top-k of the first queries
    checked = min(args.check, args.queries)
    cosine = l2_normalise(queries[:checked]).astype(np.float64) @ l2_normalise(gallery).astype(np.float64).T
    exact = {}
    for k in args.ks:
        expected = np.argsort(-cosine, axis=1, kind="stable")[:, :k]
        exact[f"k{k}"] = bool(np.array_equal(results[k][0][:checked], expected))

    result = {
        "benchmark": "knn_speed",
        "workload": {"gallery": args.gallery, "queries": args.queries, "dim": args.dim, "dtype": "float32",
                     "index": "faiss.IndexFlatIP on L2-normalised vectors",
                     "timed": "l2-normalise gallery and queries + index build + search"},
        "seconds": {f"k{k}": {"runs": [round(t, 3) for t in v], "median": round(statistics.median(v), 3),
                              "min": round(min(v), 3)} for k, v in times.items()},
        # CPU seconds of this process (all threads): near threads x wall on an idle machine; other
        # processes sharing the cores show up as wall >> cpu / threads
        "cpu_seconds": {f"k{k}": [round(t, 2) for t in v] for k, v in cpu_times.items()},
        "queries_per_s_median": {f"k{k}": round(args.queries / statistics.median(v)) for k, v in times.items()},
        "gflops_median": {f"k{k}": round(2 * args.queries * args.gallery * args.dim / statistics.median(v) / 1e9, 1)
                          for k, v in times.items()},
        "target_s": 5.0,
        "exact_on_first_queries": {"checked": checked, **exact},
        "machine": {"cpus": os.cpu_count(), "faiss_threads": args.threads or faiss.omp_get_max_threads(),
                    "faiss": faiss.__version__, "faiss_simd": faiss.get_compile_options(),
                    "numpy": np.__version__, "python": platform.python_version(),
                    "load_average": [round(x, 2) for x in os.getloadavg()]},
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
