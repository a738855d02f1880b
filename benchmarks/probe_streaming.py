"""Streamed probe (features read from HDF5 in blocks) against the in-memory full-batch probe.

Workload: an embeddings.h5 with `--rows` x `--dim` float16 features in `--classes` classes (planted
Gaussian classes, written block by block so writing never holds the matrix), one `run_probes` level.
Each mode runs in its own child process, so its peak RSS (ru_maxrss) is its own:
- `memory`: the full-batch path (`stream_rows` above the row count): the level's rows read into
  memory, standardised, `fit_logistic`;
- `stream`: `stream_rows=0`: `fit_logistic_streaming`, blocks of `--chunk-rows` rows.
Both use the same split, objective, tolerance and iteration cap, so their accuracies should agree.
Target (issue 16): 1,000,000 x 1,024 float16, 1,000 classes, on 2 cores within 24 GiB.

    nice python benchmarks/probe_streaming.py --rows 1000000 --dim 1024 --classes 1000 --modes stream
    nice python benchmarks/probe_streaming.py --rows 100000 --dim 256 --classes 100 --max-iter 30
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd


def write_features(path: Path, rows: int, dim: int, classes: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(classes, dim)).astype(np.float32) * 0.35
    y = rng.integers(0, classes, rows)
    with h5py.File(path, "w") as store:
        data = store.create_dataset("cls", shape=(rows, dim), dtype=np.float16, chunks=(min(rows, 4096), dim))
        for start in range(0, rows, 65536):
            part = y[start:start + 65536]
            data[start:start + len(part)] = (means[part] + rng.normal(size=(len(part), dim))).astype(np.float16)
    return y


def child(args) -> None:
    import torch

    from encoderlens.probes import run_probes

    torch.set_num_threads(args.threads)
    labels = pd.DataFrame({"country": np.load(args.labels).astype(str)})
    t0 = time.perf_counter()
    with h5py.File(args.features, "r") as store:
        stream_rows = 0 if args.mode == "stream" else None
        table = run_probes({"cls": store["cls"]}, labels, levels=["country"], seed=0, max_iter=args.max_iter,
                           device=args.device, stream_rows=stream_rows, chunk_rows=args.chunk_rows)
    wall = time.perf_counter() - t0
    row = table.iloc[0]
    print(json.dumps({"mode": args.mode, "wall_s": round(wall, 1),
                      "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
                      "top1": float(row["top1"]), "top5": float(row["top5"]), "n_iter": int(row["n_iter"]),
                      "converged": bool(row["converged"]), "n_train": int(row["n_train"]),
                      "load": os.getloadavg()[0]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--max-iter", type=int, default=1000)
    parser.add_argument("--chunk-rows", type=int, default=65536)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--modes", nargs="+", default=["memory", "stream"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--features", help=argparse.SUPPRESS)
    parser.add_argument("--labels", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        child(args)
        return
    with tempfile.TemporaryDirectory() as folder:
        features, labels = Path(folder) / "embeddings.h5", Path(folder) / "labels.npy"
        t0 = time.perf_counter()
        np.save(labels, write_features(features, args.rows, args.dim, args.classes, args.seed))
        result = {"rows": args.rows, "dim": args.dim, "classes": args.classes, "max_iter": args.max_iter,
                  "chunk_rows": args.chunk_rows, "threads": args.threads, "file_gib":
                  round(features.stat().st_size / 2**30, 3), "write_s": round(time.perf_counter() - t0, 1),
                  "runs": []}
        for mode in args.modes:
            out = subprocess.run([sys.executable, __file__, "--mode", mode, "--features", str(features),
                                  "--labels", str(labels), "--max-iter", str(args.max_iter), "--chunk-rows",
                                  str(args.chunk_rows), "--threads", str(args.threads), "--device", args.device],
                                 capture_output=True, text=True, check=True)
            run = json.loads(out.stdout.strip().splitlines()[-1])
            result["runs"].append(run)
            print(json.dumps(run), flush=True)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
