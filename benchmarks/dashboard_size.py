"""Dashboard byte budget at the six-model preset's shape, on synthetic tables and attention files.

Shape: 139 annotated images x 6 models x 4 variants (frozen, linear, lora, full) x 12 layers x
(12 heads + head mean) CLS maps of 14 x 14, plus rollout, 7 thresholds, 12 building-part types.
Builds the real dashboard with encoderlens.report.dashboard.build_dashboard and reports:
  initial load = index.html + assets + data/index.js + every gallery thumbnail (target <= 2 MB),
  per image   = its data file + its display image (target <= 1 MB),
  per model feature file (loaded when the Features page shows that model).

    .venv/bin/python benchmarks/dashboard_size.py [--images 139] [--keep DIR] [--browser ROUNDS]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from PIL import Image

from encoderlens.alignment.job import COLUMNS, FEATURE_COLUMNS
from encoderlens.report.dashboard import build_dashboard

MODELS = ["dinov2", "dinov3", "mae", "clip", "siglip2", "resnet50"]
VARIANTS = ["frozen", "linear", "lora", "full"]
LAYERS, HEADS, GRID = 12, 12, 14
THRESHOLDS = [10.0, 15.0, 20.0, 25.0, 30.0, 40.0, 50.0]
FEATURES = [f"part {k}" for k in range(12)]
MB = 1_000_000


def synthetic_maps(rng, n_images):
    """Peaked, attention-like maps: softmax of smooth random logits per head."""
    logits = rng.normal(size=(n_images, LAYERS, HEADS, GRID, GRID)).astype(np.float32) * 3
    flat = np.exp(logits.reshape(n_images, LAYERS, HEADS, -1))
    return (flat / flat.sum(-1, keepdims=True)).reshape(logits.shape).astype(np.float16)


def write_inputs(root: Path, n_images: int, rng) -> dict:
    results = root / "results" / "bench"
    (root / "images").mkdir(parents=True)
    ids = [f"Q{k:07d}" for k in range(n_images)]
    paths = []
    y, x = np.mgrid[0:600, 0:800]
    for k, image_id in enumerate(ids):
        pixels = np.stack([(x * 255 // 800 + 7 * k) % 256, y * 255 // 600, (x + y) % 256], -1)
        path = root / "images" / f"{image_id}.jpg"
        Image.fromarray(pixels.astype(np.uint8)).save(path, quality=90)
        paths.append(str(path))
    results.mkdir(parents=True)
    pd.DataFrame({"image_id": ids, "path": paths, "split": "test"}).to_parquet(results / "manifest.parquet")
    boxes = [(image_id, b, FEATURES[(k + b) % len(FEATURES)], 0.1 + 0.2 * b, 0.2, 0.15, 0.3, False)
             for k, image_id in enumerate(ids) for b in range(3)]
    annotations = pd.DataFrame(boxes, columns=["image_id", "box_id", "feature", "left", "top", "width",
                                               "height", "clamped"])
    annotations.to_parquet(results / "annotations.parquet")
    slots = [(layer, head) for layer in range(LAYERS) for head in [*range(HEADS), -1]]
    for model in MODELS:
        for variant in VARIANTS:
            folder = results / model / variant
            folder.mkdir(parents=True)
            with h5py.File(folder / "attention.h5", "w") as store:
                store["ids"] = np.array(ids, dtype=object).astype("S")
                store["layers"] = np.arange(LAYERS)
                store["cls"] = synthetic_maps(rng, n_images)
                store["rollout"] = rng.random((n_images, GRID, GRID)).astype(np.float32)
                store.attrs["image_size"] = 224
            all_slots = [("cls", l, h) for l, h in slots] + [("rollout", -1, -1)]
            keys = pd.MultiIndex.from_product([ids, range(len(all_slots)), THRESHOLDS],
                                              names=["image_id", "slot", "threshold"]).to_frame(index=False)
            keys["method"] = [all_slots[s][0] for s in keys["slot"]]
            keys["layer"] = [all_slots[s][1] for s in keys["slot"]]
            keys["head"] = [all_slots[s][2] for s in keys["slot"]]
            table = keys.assign(model=model, variant=variant, iou=rng.random(len(keys)) * 0.5,
                                coverage=rng.random(len(keys)), pointing_hit=1.0 * (rng.random(len(keys)) < 0.3),
                                scorable=True)[COLUMNS]
            table.to_parquet(folder / "alignment.parquet")
            per_feature = table.merge(annotations[["image_id", "feature"]], on="image_id")[FEATURE_COLUMNS]
            per_feature.to_parquet(folder / "alignment_features.parquet")
    baseline = pd.MultiIndex.from_product([ids, ["random", "gaussian", "sobel"], THRESHOLDS],
                                          names=["image_id", "method", "threshold"]).to_frame(index=False)
    baseline = baseline.assign(model="baseline", variant="", layer=-1, head=-1,
                               iou=rng.random(len(baseline)) * 0.3, coverage=rng.random(len(baseline)),
                               pointing_hit=rng.random(len(baseline)), scorable=True)[COLUMNS]
    (results / "baselines").mkdir()
    baseline.to_parquet(results / "baselines" / "alignment.parquet")
    baseline.merge(annotations[["image_id", "feature"]], on="image_id")[FEATURE_COLUMNS].to_parquet(
        results / "baselines" / "alignment_features.parquet")
    return {"annotated": {"bench": {"models": {m: VARIANTS for m in MODELS}, "thresholds": THRESHOLDS,
                                    "analysis_size": None, "summary": None}}}


def measure(site: Path) -> dict:
    size = lambda paths: sum(p.stat().st_size for p in paths)  # noqa: E731
    fixed = [site / "index.html", *sorted((site / "assets").iterdir()), site / "data" / "index.js"]
    thumbs = sorted(site.glob("img/*/*_thumb.jpg"))
    per_image = []
    for data in sorted(site.glob("data/*/images/*.js")):
        display = site / "img" / data.parent.parent.name / f"{data.stem}.jpg"
        per_image.append((data.stat().st_size, display.stat().st_size))
    features = sorted(site.glob("data/*/features/*.js"))
    data_sizes = [d for d, _ in per_image]
    return {
        "initial_load_bytes": size(fixed) + size(thumbs),
        "index_js_bytes": (site / "data" / "index.js").stat().st_size,
        "thumbnails_bytes": size(thumbs),
        "image_data_bytes_max": max(data_sizes),
        "image_data_bytes_median": int(np.median(data_sizes)),
        "image_with_display_jpeg_bytes_max": max(d + j for d, j in per_image),
        "feature_file_bytes_max": max(p.stat().st_size for p in features),
        "n_images": len(per_image),
    }


def interaction_timings(site: Path, rounds: int) -> dict:
    """Selector change -> repainted canvas in headless Chromium (performance.now() in the page: the
    synchronous redraw, and the next animation frame plus the task after it), preset-shaped image,
    all four variants side by side at 224 px analysis resolution."""
    import shutil as which

    from playwright.sync_api import sync_playwright

    changes = [("layer", 5), ("head", 3), ("threshold", 50), ("model", "clip"), ("head", -1),
               ("layer", 11), ("threshold", 10), ("model", "dinov2")]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=which.which("chromium"), headless=True)
        page = browser.new_page(viewport={"width": 1800, "height": 1200})
        page.goto(f"file://{site.resolve()}/index.html#image/0/0")
        page.wait_for_function("() => document.querySelector('#page-image')?.dataset.ready === '1'",
                               timeout=60000)
        for _ in range(rounds):
            for name, value in changes:
                renders = page.evaluate("() => encoderlens.state.renders")
                page.select_option(f"#page-image #select-{name}", str(value))
                page.wait_for_function(f"() => encoderlens.state.renders > {renders}")
        page.wait_for_timeout(200)
        timings = page.evaluate("() => encoderlens.timings()")
        browser.close()
    draw = np.array([t["draw_ms"] for t in timings])
    frame = np.array([t["frame_ms"] for t in timings])
    by_control = {}
    for t in timings:
        by_control.setdefault(t["control"], []).append(t["draw_ms"])
    return {"changes": len(timings), "panels": len(VARIANTS),
            "draw_ms_median_by_control": {k: round(float(np.median(v)), 1) for k, v in by_control.items()},
            "draw_ms_median": round(float(np.median(draw)), 1), "draw_ms_max": round(float(draw.max()), 1),
            "frame_ms_median": round(float(np.median(frame)), 1), "frame_ms_max": round(float(frame.max()), 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=139)
    parser.add_argument("--keep", help="build into this folder and keep it")
    parser.add_argument("--browser", type=int, default=0, metavar="ROUNDS",
                        help="also time selector changes in headless Chromium (rounds of 8 changes)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="dashboard_bench_"))
    try:
        layout = write_inputs(root, args.images, np.random.default_rng(0))
        site = Path(args.keep) if args.keep else root / "dashboard"
        start = time.perf_counter()
        build_dashboard(layout, site, {"display_size": 448, "thumbnail_size": 160, "jpeg_quality": 85,
                                       "max_images": 0}, results=root / "results")
        figures = measure(site) | {"build_seconds": round(time.perf_counter() - start, 1)}
        figures["initial_load_ok"] = figures["initial_load_bytes"] <= 2 * MB
        figures["per_image_ok"] = figures["image_data_bytes_max"] <= 1 * MB
        if args.browser:
            figures["interaction"] = interaction_timings(site, args.browser)
        print(json.dumps(figures, indent=2))
    finally:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
