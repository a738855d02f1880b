"""Time the figure functions on tables of the paper presets' shape (synthetic numbers).

Alignment: six models x four variants x 12 layers x 13 head slots x 7 thresholds x 3 metrics in the
statistics summary; the per-feature table of 631 images (WikiChurches' annotated set) at one
threshold with 2.5 building-part types per image. Geo: 100,000 pairs for the hexbin, 10,000 kNN
queries x 2 methods x 3 model/variant entries for the GeoScore curves.

    .venv/bin/python benchmarks/figures_speed.py [--images 631] [--dpi 300]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from encoderlens.report.figures import save_plot
from encoderlens.report.figures_alignment import (plot_iou_by_layer, plot_leaderboard,
                                                  plot_threshold_sensitivity)
from encoderlens.report.figures_geo import plot_cosine_distance, plot_geoscore
from encoderlens.report.figures_heads import plot_head_feature

MODELS = ["dinov2", "dinov3", "mae", "clip", "siglip2", "resnet50"]
VARIANTS = ["frozen", "linear", "lora", "full"]
THRESHOLDS = [10.0, 15.0, 20.0, 25.0, 30.0, 40.0, 50.0]
FEATURES = ["Round-arch window", "Round-arch portal", "Pointed-arch window", "Pointed-arch portal",
            "Pedimented window", "Pedimented portal", "Oval window", "Broken-pediment portal"]


def summary_table(rng) -> pd.DataFrame:
    keys = pd.MultiIndex.from_product([MODELS, VARIANTS, ["cls"], range(12), range(-1, 12), THRESHOLDS,
                                       ["iou", "coverage", "pointing_hit"]],
                                      names=["model", "variant", "method", "layer", "head", "threshold",
                                             "metric"]).to_frame(index=False)
    mean = rng.uniform(0.05, 0.5, len(keys))
    return keys.assign(n=631, n_dropped=0, mean=mean, ci_low=mean - 0.02, ci_high=mean + 0.02)


def features_table(rng, images: int) -> pd.DataFrame:
    per_image = [rng.choice(FEATURES, size=rng.integers(1, 5), replace=False) for _ in range(images)]
    pairs = [(f"img{i}", feature) for i, features in enumerate(per_image) for feature in features]
    base = pd.DataFrame(pairs, columns=["image_id", "feature"])
    grid = pd.MultiIndex.from_product([MODELS, ["frozen"], ["cls"], [11], range(-1, 12)],
                                      names=["model", "variant", "method", "layer", "head"]).to_frame(index=False)
    table = base.merge(grid, how="cross").assign(threshold=25.0, scorable=True)
    return table.assign(iou=rng.uniform(size=len(table)))


def timed(label: str, make, folder: Path, dpi: int) -> None:
    """Wall and CPU seconds (CPU time is what to compare on a shared machine)."""
    wall, cpu = time.perf_counter(), time.process_time()
    plot = make()
    built_wall, built_cpu = time.perf_counter(), time.process_time()
    save_plot(plot, folder / f"{label}.png", folder / f"{label}.svg", folder / f"{label}.csv", dpi=dpi)
    print(f"{label:22s} build {built_wall - wall:6.2f} s wall {built_cpu - cpu:6.2f} s CPU   "
          f"save png+svg+csv {time.perf_counter() - built_wall:6.2f} s wall "
          f"{time.process_time() - built_cpu:6.2f} s CPU")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=631)
    parser.add_argument("--dpi", type=int, default=300)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    summary = summary_table(rng)
    features = features_table(rng, args.images)
    pairs = pd.DataFrame({"distance_km": rng.uniform(0, 20_000, 100_000), "cosine": rng.uniform(0.2, 1, 100_000)})
    bins = pd.DataFrame({"lo_km": [0, 1, 25, 200, 750, 2500], "hi_km": [1, 25, 200, 750, 2500, 20100],
                         "count": 1, "cosine_mean": 0.5, "cosine_std": 0.1})
    predictions = pd.DataFrame({"model": np.repeat(["streetclip", "streetclip", "clip_l"], 20_000),
                                "variant": np.repeat(["frozen", "distcal", "frozen"], 20_000),
                                "features": "cls", "method": np.tile(np.repeat(["top1", "weighted_top10"], 10_000), 3),
                                "geoscore": rng.uniform(0, 5000, 60_000)})
    print(f"summary {len(summary):,} rows; per-feature table {len(features):,} rows at one threshold")
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        timed("leaderboard", lambda: plot_leaderboard(summary, 25.0), folder, args.dpi)
        timed("iou_by_layer", lambda: plot_iou_by_layer(summary, 25.0), folder, args.dpi)
        timed("threshold_sensitivity", lambda: plot_threshold_sensitivity(summary, 25.0), folder, args.dpi)
        timed("head_feature", lambda: plot_head_feature(features, 25.0), folder, args.dpi)
        timed("cosine_distance", lambda: plot_cosine_distance([("streetclip", pairs, bins)] * 3), folder, args.dpi)
        timed("geoscore", lambda: plot_geoscore(predictions), folder, args.dpi)


if __name__ == "__main__":
    main()
