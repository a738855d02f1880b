"""Alignment scoring throughput: (map x threshold) IoU evaluations per second at the analysis resolution.

Workload: `--images` images, each with `--maps-per-image` maps (default 144 = 12 layers x 12 heads of
a ViT-B) on a 14x14 grid, upsampled bilinearly to 224x224 and scored against the image's box mask at
the 7 default thresholds (plus coverage and the pointing game, which come with every score). Maps are
Dirichlet(0.3) draws over the grid (peaked, like trained attention) or, with --kind noise, i.i.d.
uniform pixels at 224x224 (the flattest case for the mass thresholds, like the random baseline).

Measured (medians of --repeats runs; wall and CPU seconds, since the machine may be shared):
- kernel: `score_grid_maps` (upsampling inside the compiled kernel) on all maps in one call, on 1
  and on --threads threads, as `alignment.job` calls it; `score_maps` for --kind noise;
- reference: the NumPy implementation (`upsample` + `score_maps_reference`, one sort per map) on
  --reference-images images, and the ratio kernel / reference;
- loop: the per-map, per-threshold Python loop (`mass_iou`: one full sort per map and threshold) on
  --loop-maps maps, and the ratio kernel / loop;
- compile: the first call in a fresh process with an empty numba cache, and with the cache filled.
Target: >= 100,000 pairs/s on 2 CPU cores (1,000,000 IoU evaluations in 10 s).

    python benchmarks/alignment_throughput.py
    python benchmarks/alignment_throughput.py --kind noise --images 20
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

from encoderlens.alignment import (DEFAULT_THRESHOLDS, box_mask, mass_iou, score_grid_maps, score_maps,
                                   score_maps_reference, upsample)

COMPILE_PROBE = """
import time, numpy as np
start = time.perf_counter()
from encoderlens.alignment import score_grid_maps
imported = time.perf_counter()
score_grid_maps(np.ones((1, 14, 14), np.float32), np.ones((1, 224, 224), bool), threads=1)
print(imported - start, time.perf_counter() - imported)
"""


def workload(args) -> tuple[np.ndarray, np.ndarray]:
    """All maps, (I * V, 14, 14) grids or (I * V, S, S) noise, and the images' masks (I, S, S)."""
    rng = np.random.default_rng(0)
    size = args.size
    masks = []
    for _ in range(args.images):
        left, top = rng.uniform(0, 0.6, 2)
        masks.append(box_mask([[left, top, rng.uniform(0.1, 0.4), rng.uniform(0.1, 0.4)]], size))
    n_maps = args.images * args.maps_per_image
    if args.kind == "noise":
        maps = rng.random((n_maps, size, size), dtype=np.float32)
    else:
        maps = rng.dirichlet(np.full(args.grid**2, 0.3), size=n_maps).astype(np.float32)
        maps = maps.reshape(-1, args.grid, args.grid)
    return maps, np.stack(masks)


def timed(function, repeats: int) -> tuple[float, float]:
    """Median wall and CPU seconds of `repeats` calls."""
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        function()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return float(np.median(wall)), float(np.median(cpu))


def compile_seconds() -> dict[str, float]:
    """Import and first-call seconds in fresh processes: empty numba cache, then the filled cache."""
    result = {}
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        for label in ("cold_cache", "warm_cache"):
            out = subprocess.run([sys.executable, "-c", COMPILE_PROBE], env=env, check=True,
                                 capture_output=True, text=True).stdout.split()
            result["import_s"] = round(float(out[0]), 2)
            result[f"first_call_{label}_s"] = round(float(out[1]), 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--maps-per-image", type=int, default=144)
    parser.add_argument("--grid", type=int, default=14)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--kind", choices=["attention", "noise"], default="attention")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--reference-images", type=int, default=2)
    parser.add_argument("--loop-maps", type=int, default=12)
    parser.add_argument("--no-compile", action="store_true", help="skip the compile-time probe")
    args = parser.parse_args()
    n_thresholds = len(DEFAULT_THRESHOLDS)
    load_before = os.getloadavg()
    maps, masks = workload(args)
    image_of_map = np.repeat(np.arange(args.images), args.maps_per_image)
    pairs = len(maps) * n_thresholds

    def kernel(threads: int):
        if args.kind == "noise":
            return score_maps(maps, masks[image_of_map], threads=threads)
        return score_grid_maps(maps, masks, np.arange(len(maps)), image_of_map, threads=threads)

    kernel(1)  # compile or load the cached kernel outside the timing
    rates = {}
    for threads in sorted({1, args.threads}):
        wall, cpu = timed(lambda: kernel(threads), args.repeats)
        rates[f"{threads}_thread"] = {"pairs_per_s": round(pairs / wall), "seconds_for_1e6_pairs":
                                      round(1e6 / pairs * wall, 2), "us_per_map_wall": round(wall / len(maps) * 1e6, 1),
                                      "us_per_map_cpu": round(cpu / len(maps) * 1e6, 1)}

    # the NumPy reference and the Python loop, on a few images' maps, one thread
    few = slice(0, args.reference_images * args.maps_per_image)
    analysis = maps[few] if args.kind == "noise" else upsample(maps[few], args.size)
    reference_wall, _ = timed(lambda: score_maps_reference(analysis, masks[image_of_map[few]]), 1)
    reference_rate = analysis.shape[0] * n_thresholds / reference_wall
    start = time.perf_counter()
    for saliency in analysis[:args.loop_maps]:
        for percent in DEFAULT_THRESHOLDS:
            mass_iou(saliency, masks[0], percent)
    loop_rate = args.loop_maps * n_thresholds / (time.perf_counter() - start)
    single = rates["1_thread"]["pairs_per_s"]
    best = rates[f"{args.threads}_thread"]["pairs_per_s"]
    result = {
        "workload": {"kind": args.kind, "images": args.images, "maps_per_image": args.maps_per_image,
                     "grid": args.grid, "size": args.size, "thresholds": list(DEFAULT_THRESHOLDS),
                     "pairs": pairs},
        "kernel": rates,
        "reference_pairs_per_s_1_thread": round(reference_rate),
        "loop_pairs_per_s": round(loop_rate, 1),
        "kernel_1_thread_vs_reference": round(single / reference_rate, 1),
        "kernel_1_thread_vs_loop": round(single / loop_rate, 1),
        f"kernel_{args.threads}_threads_vs_loop": round(best / loop_rate, 1),
        "target_pairs_per_s": 100_000,
        "target_met": best >= 100_000,
        "compile": None if args.no_compile else compile_seconds(),
        "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__},
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
