"""Alignment scoring throughput: (map x threshold) IoU evaluations per second at the analysis resolution.

Workload: per image, `--maps-per-image` maps (default 144 = 12 layers x 12 heads of a ViT-B) on a
14x14 grid, upsampled bilinearly to 224x224 and scored against the image's box mask at the 7 default
thresholds (plus coverage and the pointing game, which come with every call). Maps are Dirichlet(0.3)
draws over the grid (peaked, like trained attention) or, with --kind noise, i.i.d. uniform pixels at
224x224 (the flattest case for the mass thresholds).

Measured:
- score: `score_maps` on maps already upsampled, one process;
- pipeline: upsample + score per image, in 1 and in `--workers` processes (one thread each; with
  --kind noise it includes drawing the noise, which costs as much as scoring it);
- loop: the per-map, per-threshold reference (`mass_iou`: one full sort per map and threshold), on
  `--loop-maps` maps, and the ratio of `score_maps` to it;
- upsample alone.
Target: >= 100,000 pairs/s on 2 CPU cores (1,000,000 IoU evaluations in 10 s).

    python benchmarks/alignment_throughput.py
    python benchmarks/alignment_throughput.py --kind noise --images 20
"""

from __future__ import annotations

import argparse
import json
import os

# one BLAS thread per process: the 2-process runs must not oversubscribe the 2 cores
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import platform
import time
from multiprocessing import get_context

import numpy as np
import torch

from encoderlens.alignment import DEFAULT_THRESHOLDS, box_mask, mass_iou, score_maps, upsample


def image_workload(seed: int, args) -> tuple[np.ndarray, np.ndarray]:
    """One image's maps, (V, 14, 14) grid maps or (V, S, S) noise maps, and its box mask."""
    rng = np.random.default_rng(seed)
    size = args.size
    left, top = rng.uniform(0, 0.6, 2)
    mask = box_mask([[left, top, rng.uniform(0.1, 0.4), rng.uniform(0.1, 0.4)]], size)
    if args.kind == "noise":
        return rng.random((args.maps_per_image, size, size), dtype=np.float32), mask
    grid = rng.dirichlet(np.full(args.grid**2, 0.3), size=args.maps_per_image).astype(np.float32)
    return grid.reshape(-1, args.grid, args.grid), mask


def to_analysis(maps: np.ndarray, size: int) -> np.ndarray:
    return maps if maps.shape[-1] == size else upsample(maps, size)


def pipeline_worker(job) -> int:
    """Upsample and score the images `seeds`; returns the number of (map, threshold) pairs."""
    seeds, args = job
    torch.set_num_threads(1)
    pairs = 0
    for seed in seeds:
        maps, mask = image_workload(seed, args)
        scores = score_maps(to_analysis(maps, args.size), mask)
        pairs += scores.iou.size
    return pairs


def run_pipeline(args, workers: int) -> float:
    """Pairs per second of `workers` processes, timed after they have started and imported."""
    seeds = list(range(args.images))
    jobs = [(seeds[w::workers], args) for w in range(workers)]
    with get_context("spawn").Pool(workers) as pool:
        pool.map(pipeline_worker, [([], args)] * workers)  # start and import outside the timing
        start = time.perf_counter()
        pairs = sum(pool.map(pipeline_worker, jobs, chunksize=1))
        return pairs / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--maps-per-image", type=int, default=144)
    parser.add_argument("--grid", type=int, default=14)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--kind", choices=["attention", "noise"], default="attention")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--loop-maps", type=int, default=12)
    args = parser.parse_args()
    torch.set_num_threads(1)
    n_thresholds = len(DEFAULT_THRESHOLDS)

    # scoring alone, one process, maps already at the analysis resolution
    images = [image_workload(seed, args) for seed in range(min(args.images, 10))]
    upsample_start = time.perf_counter()
    analysis = [(to_analysis(maps, args.size), mask) for maps, mask in images]
    upsample_seconds = time.perf_counter() - upsample_start
    start = time.perf_counter()
    for maps, mask in analysis:
        score_maps(maps, mask)
    score_seconds = time.perf_counter() - start
    n_maps = sum(len(maps) for maps, _ in analysis)
    score_rate = n_maps * n_thresholds / score_seconds

    # the per-map, per-threshold loop on a few of the same maps
    maps, mask = analysis[0]
    start = time.perf_counter()
    for saliency in maps[:args.loop_maps]:
        for percent in DEFAULT_THRESHOLDS:
            mass_iou(saliency, mask, percent)
    loop_rate = args.loop_maps * n_thresholds / (time.perf_counter() - start)

    pipeline = {f"{workers}_process": run_pipeline(args, workers) for workers in sorted({1, args.workers})}
    pipeline_us_per_map = {key: 1e6 * n_thresholds / rate for key, rate in pipeline.items()}
    result = {
        "workload": {"kind": args.kind, "images": args.images, "maps_per_image": args.maps_per_image,
                     "grid": args.grid, "size": args.size, "thresholds": list(DEFAULT_THRESHOLDS)},
        "score_pairs_per_s_1_process": round(score_rate),
        "score_us_per_map": round(score_seconds / n_maps * 1e6, 1),
        "pipeline_pairs_per_s": {key: round(rate) for key, rate in pipeline.items()},
        "pipeline_us_per_map": {key: round(value, 1) for key, value in pipeline_us_per_map.items()},
        "loop_pairs_per_s": round(loop_rate, 1),
        "speedup_vs_loop": round(score_rate / loop_rate, 1),
        "upsample_maps_per_s": None if args.kind == "noise" else round(n_maps / upsample_seconds),
        "target_pairs_per_s": 100_000,
        "seconds_for_1e6_pairs": {key: round(1e6 / rate, 1) for key, rate in pipeline.items()},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "numpy": np.__version__, "torch": torch.__version__},
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
