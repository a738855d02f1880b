"""Alignment statistics at the six-model preset's table shape, on a synthetic table.

Shape (defaults): 139 images x 6 models x 4 variants (frozen, linear, lora, full) x 12 layers x
13 head slots (12 heads + the head mean) x 7 thresholds of one method (CLS attention) = 5.45 M rows,
plus the three baselines. IoU ~ Beta with a per-model, per-layer offset; coverage and the pointing
game repeat across thresholds, as the alignment stage writes them; 0.2% of the rows unscorable.
Timed: building the (map x image) matrices, the bootstrap summary (10,000 resamples, three metrics),
model/baseline comparisons and tuned-vs-frozen comparisons (last and best layer, three metrics),
i.e. everything `alignment_statistics` does after reading the parquet files.
Target: under 60 s on 2 CPU cores.

    python benchmarks/stats_speed.py
    python benchmarks/stats_speed.py --images 40 --resamples 2000   # a quick look
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import pandas as pd

from encoderlens.stats import model_comparisons, score_matrix, summarise_alignment, variant_comparisons

THRESHOLDS = [10.0, 15.0, 20.0, 25.0, 30.0, 40.0, 50.0]


def synthetic_alignment_table(n_images=139, n_models=6, variants=("frozen", "linear", "lora", "full"),
                              n_layers=12, n_heads=12, thresholds=THRESHOLDS, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    models = [f"model{m}" for m in range(n_models)]
    maps = pd.MultiIndex.from_product(
        [models, list(variants), range(n_layers), range(-1, n_heads)],
        names=["model", "variant", "layer", "head"]).to_frame(index=False)
    per_map = len(maps)
    n_thresholds = len(thresholds)
    rows = per_map * n_images * n_thresholds
    model_effect = maps["model"].str[-1].astype(int).to_numpy() * 0.01 + maps["layer"].to_numpy() * 0.004
    base = np.repeat(model_effect, n_images * n_thresholds)
    threshold_effect = np.tile(np.asarray(thresholds) / 400, per_map * n_images)
    iou = np.clip(rng.beta(2, 8, rows) + base + threshold_effect, 0, 1)
    coverage = np.repeat(np.clip(rng.beta(2, 5, per_map * n_images), 0, 1), n_thresholds)
    hit = np.repeat((rng.random(per_map * n_images) < 0.4).astype(float), n_thresholds)
    scorable = np.repeat(rng.random(per_map * n_images) > 0.002, n_thresholds)
    frame = pd.DataFrame({
        "image_id": np.tile(np.repeat([f"Q{i:06d}" for i in range(n_images)], n_thresholds), per_map),
        "model": np.repeat(maps["model"].to_numpy(), n_images * n_thresholds),
        "variant": np.repeat(maps["variant"].to_numpy(), n_images * n_thresholds),
        "method": "cls",
        "layer": np.repeat(maps["layer"].to_numpy(), n_images * n_thresholds),
        "head": np.repeat(maps["head"].to_numpy(), n_images * n_thresholds),
        "threshold": np.tile(np.asarray(thresholds, dtype=float), per_map * n_images),
        "iou": iou, "coverage": coverage, "pointing_hit": hit, "scorable": scorable,
    })
    for column in ("iou", "coverage", "pointing_hit"):
        frame.loc[~frame["scorable"], column] = np.nan
    baseline_rows = len(thresholds) * n_images
    baselines = pd.concat([pd.DataFrame({
        "image_id": np.repeat([f"Q{i:06d}" for i in range(n_images)], n_thresholds),
        "model": "baseline", "variant": "", "method": name, "layer": -1, "head": -1,
        "threshold": np.tile(np.asarray(thresholds, dtype=float), n_images),
        "iou": rng.beta(2, 12, baseline_rows),
        "coverage": np.repeat(rng.beta(2, 6, n_images), n_thresholds),
        "pointing_hit": np.repeat(rng.random(n_images), n_thresholds), "scorable": True,
    }) for name in ("random", "gaussian", "sobel")], ignore_index=True)
    return pd.concat([frame, baselines], ignore_index=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=139)
    parser.add_argument("--models", type=int, default=6)
    parser.add_argument("--resamples", type=int, default=10_000)
    parser.add_argument("--layers", type=int, default=12)
    args = parser.parse_args()
    table = synthetic_alignment_table(n_images=args.images, n_models=args.models, n_layers=args.layers)
    metrics = ["iou", "coverage", "pointing_hit"]
    settings = {"n_resamples": args.resamples, "confidence": 0.95, "seed": 0}
    shared = {"layer_choices": ["last", "best"], "scopes": ["primary"], "alpha": 0.05, **settings}
    timings = {}
    cpu_start = time.process_time()
    start = time.perf_counter()
    matrix = score_matrix(table, metrics)
    timings["matrix_s"] = time.perf_counter() - start
    mark = time.perf_counter()
    summary = summarise_alignment(matrix, metrics, **settings)
    timings["summary_s"] = time.perf_counter() - mark
    mark = time.perf_counter()
    models = model_comparisons(matrix, metrics, **shared)
    timings["model_comparisons_s"] = time.perf_counter() - mark
    mark = time.perf_counter()
    variants = variant_comparisons(matrix, metrics, **shared)
    timings["variant_comparisons_s"] = time.perf_counter() - mark
    timings["total_s"] = time.perf_counter() - start
    timings["total_cpu_s"] = time.process_time() - cpu_start  # all threads; wall on an idle machine lies between cpu/2 and cpu
    print(json.dumps({
        "rows": len(table), "maps": len(matrix.keys), "images": len(matrix.image_ids),
        "summary_rows": len(summary), "model_tests": len(models), "variant_tests": len(variants),
        "resamples": args.resamples, "cpus": platform.machine(),
        **{key: round(value, 2) for key, value in timings.items()},
        "target_s": 60, "met": timings["total_s"] < 60,
    }, indent=2))


if __name__ == "__main__":
    main()
