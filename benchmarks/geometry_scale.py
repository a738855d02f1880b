"""Geometry (cosine vs distance, anisotropy) and gallery study time as the dataset grows.

Workload: `--sizes` rows of float16 embeddings (`--dim`, stored dtype of large extractions) with
random locations and country labels; `geometry_study` with the defaults (100,000 sampled pairs,
anisotropy on at most `geo.geometry_rows` = 100,000 rows) and `gallery_study` (gallery of 1,000,
one seed, same row cap) are timed at each size in one run. Cost should stay flat above the caps.

    nice python benchmarks/geometry_scale.py --sizes 10000 100000 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import pandas as pd

from encoderlens.geo.job import gallery_study, geometry_study

BINS = (0.0, 1.0, 10.0, 100.0, 1000.0, 10000.0, 20038.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--pairs", type=int, default=100_000)
    parser.add_argument("--max-rows", type=int, default=100_000)
    parser.add_argument("--gallery-size", type=int, default=1000)
    parser.add_argument("--skip-gallery", action="store_true")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    largest = max(args.sizes)
    embeddings = np.empty((largest, args.dim), dtype=np.float16)
    for start in range(0, largest, 100_000):
        stop = min(start + 100_000, largest)
        embeddings[start:stop] = rng.normal(size=(stop - start, args.dim)) + 0.5
    table = pd.DataFrame({"image_id": np.arange(largest).astype(str),
                          "latitude": np.degrees(np.arcsin(rng.uniform(-1, 1, largest))),
                          "longitude": rng.uniform(-180, 180, largest),
                          "country": rng.choice([f"C{i}" for i in range(50)], largest)})
    for n in args.sizes:
        part = table.iloc[:n]
        t0 = time.perf_counter()
        summary, _ = geometry_study({"cls": embeddings[:n]}, part, args.pairs, 0, BINS, max_rows=args.max_rows)
        geometry_s = time.perf_counter() - t0
        row = {"rows": n, "geometry_s": round(geometry_s, 2), "pairs": int(summary["n_pairs"].iloc[0]),
               "anisotropy_rows": int(summary["n"].iloc[0])}
        if not args.skip_gallery:
            t0 = time.perf_counter()
            gallery_study(embeddings[:n], part, args.gallery_size, [0], 0.2, ["country"], max_rows=args.max_rows)
            row["gallery_s"] = round(time.perf_counter() - t0, 2)
        row["load"] = os.getloadavg()[0]
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
