"""A small synthetic study for the dashboard tests: real attention.h5 files scored by the real alignment
code, two models (one with heads and rollout, one Grad-CAM-like) and two variants each."""

from __future__ import annotations

import json
import re
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from PIL import Image

from encoderlens.alignment.job import score_attention_file, score_baselines
from encoderlens.tables import write_table

THRESHOLDS = [10.0, 30.0, 50.0]
MODELS = {"vit_a": ["frozen", "lora"], "cnn_b": ["frozen", "full"]}
FEATURES = ["Portal", "Window", "Tower"]
N_IMAGES = 4
SETTINGS = {"display_size": 96, "thumbnail_size": 32, "jpeg_quality": 80, "max_images": 0}


def _attention(path: Path, ids, rng, per_head: bool, grid: int, image_size: int) -> None:
    with h5py.File(path, "w") as store:
        store["ids"] = np.array(ids, dtype="S")
        store["layers"] = np.array([1, 3])
        store.attrs["image_size"] = image_size
        if per_head:
            cls = rng.gamma(0.5, size=(len(ids), 2, 3, grid, grid)).astype(np.float16)
            cls[0, 0, 1] = np.nan  # one unscorable head: shown as such, scores NaN
            store["cls"] = cls
            store["rollout"] = rng.random((len(ids), grid, grid)).astype(np.float32)
        else:
            store["gradcam"] = rng.random((len(ids), grid, grid)).astype(np.float32)


def write_study(root: Path, seed: int = 0) -> dict:
    """Inputs under root/results/demo (manifest, annotations, attention, alignment tables, baselines);
    returns the dashboard layout."""
    rng = np.random.default_rng(seed)
    folder = root / "results" / "demo"
    (root / "images").mkdir(parents=True, exist_ok=True)
    ids = [f"img{k}" for k in range(N_IMAGES + 1)]  # the last one has no boxes: not in the gallery
    paths = []
    for k, image_id in enumerate(ids):
        path = root / "images" / f"{image_id}.png"
        pixels = rng.integers(0, 255, size=(48 + 8 * k, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(path)
        paths.append(str(path))
    manifest = pd.DataFrame({"image_id": ids, "path": paths, "split": "test"})
    write_table(manifest, folder / "manifest.parquet")
    boxes = []
    for k, image_id in enumerate(ids[:N_IMAGES]):
        for b in range(1 + k % 3):
            boxes.append((image_id, b, FEATURES[(k + b) % 3], 0.1 + 0.25 * b, 0.2, 0.3, 0.5, False))
    annotations = pd.DataFrame(boxes, columns=["image_id", "box_id", "feature", "left", "top", "width",
                                               "height", "clamped"])
    write_table(annotations, folder / "annotations.parquet")
    for model, variants in MODELS.items():
        for variant in variants:
            base = folder / model / variant
            base.mkdir(parents=True)
            per_head = model.startswith("vit")
            _attention(base / "attention.h5", ids, rng, per_head, grid=4 if per_head else 3, image_size=32)
            scores, features = score_attention_file(base / "attention.h5", annotations, model, variant,
                                                    THRESHOLDS, tolerance=2, analysis_size=32)
            write_table(scores, base / "alignment.parquet")
            write_table(features, base / "alignment_features.parquet")
    scores, features = score_baselines(manifest, annotations, ["random", "gaussian"], 32, THRESHOLDS,
                                       tolerance=2, draws=2, seed=0)
    write_table(scores, folder / "baselines" / "alignment.parquet")
    write_table(features, folder / "baselines" / "alignment_features.parquet")
    return {"annotated": {"demo": {"models": MODELS, "thresholds": THRESHOLDS, "analysis_size": 32,
                                   "summary": None}}, "geo": {}, "captions": []}


def registered(path: Path) -> list:
    """The JSON arguments of the `encoderlens.<function>(...)` call in a data file."""
    match = re.fullmatch(r"encoderlens\.\w+\((.*)\);\n", path.read_text(encoding="utf-8"), re.S)
    assert match, f"{path} is not a registration call"
    return json.loads(f"[{match.group(1)}]")


# ---- driving the page in a real browser (Playwright + the system's Chromium) -------------------
def chromium_binary() -> str | None:
    import shutil

    return shutil.which("chromium") or shutil.which("chromium-browser")


def wait_ready(page) -> None:
    page.wait_for_function("() => document.querySelector('#page-image')?.dataset.ready === '1'",
                           timeout=15000)


def choose(page, name: str, value) -> None:
    """Change one selector of the image page as a user would, and wait for the repaint."""
    selector = f"#page-image #select-{name}"
    if page.input_value(selector) == str(value):
        return
    renders = page.evaluate("() => encoderlens.state.renders")
    page.select_option(selector, str(value))
    page.wait_for_function(f"() => encoderlens.state.renders > {renders}", timeout=5000)
    wait_ready(page)


def canvas_pixels(page, variant: str) -> np.ndarray:
    """The panel's canvas as the screen shows it (an element screenshot: works even where a file://
    image taints the canvas for getImageData)."""
    import io

    png = page.locator(f"#page-image .panel[data-variant='{variant}'] canvas.overlay").screenshot()
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def shown_scores(page, variant: str) -> dict:
    panel = f"#page-image .panel[data-variant='{variant}']"
    return {name: page.inner_text(f"{panel} .{name}") for name in ("iou", "coverage", "pointing")}


def expected_scores(table: pd.DataFrame, image_id: str, selection: dict) -> dict:
    """The scores alignment.parquet holds for the page's selection, printed as the page prints them."""
    rows = table[(table["image_id"] == image_id) & (table["method"] == selection["method"]) &
                 (table["layer"] == selection["layer"]) & (table["head"] == selection["head"]) &
                 (table["threshold"] == selection["threshold"])]
    assert len(rows) == 1, rows
    row = rows.iloc[0]
    text = lambda v: "n/a" if np.isnan(v) else format(v, ".4f")  # noqa: E731
    return {"iou": text(row.iou), "coverage": text(row.coverage), "pointing": pointing_text(row.pointing_hit)}


def pointing_text(value: float) -> str:
    """The pointing game as the page prints it: hit or miss, a share only for tied maxima."""
    if np.isnan(value):
        return "n/a"
    code = int(format(value, ".4f").replace(".", ""))
    return {10000: "hit", 0: "miss"}.get(code, f"{format(value, '.4f')} of tied maxima")


def write_geo_and_captions(results: Path, seed: int = 0) -> dict:
    """Geo tables of two models (frozen; distcal for one) and caption tables, in the columns the geo and
    caption stages write (probes.job.COLUMNS, geo.job, geo.calibration, captions.profile/diversity)."""
    from encoderlens.probes.job import COLUMNS

    rng = np.random.default_rng(seed)
    for model in ("street_a", "street_b"):
        folder = results / "streets" / model
        rows = []
        for level, n_test in [("country", 200), ("region", 180), ("city", 60)]:
            for features in ("cls", "mean"):
                rows.append({"level": level, "features": features, "n_classes": 7, "n_train": 3 * n_test,
                             "n_test": n_test, "dropped_samples": 0, "top1": float(rng.uniform(0.2, 0.6)),
                             "top5": 0.8, "macro_f1": 0.3, "majority_top1": 0.15, "probeable": level != "city",
                             "dropped_classes": 0, "n_missing": 0, "stratified": True, "n_iter": 37,
                             "converged": True, "note": ""})
        folder.mkdir(parents=True, exist_ok=True)
        write_table(pd.DataFrame(rows, columns=COLUMNS), folder / "probes.parquet")
        for variant in (["frozen", "distcal"] if model == "street_a" else ["frozen"]):
            base = folder / variant
            knn = pd.DataFrame({"features": ["cls", "cls"], "method": ["top1", "weighted_top5"],
                                "geoscore": [2100.5, 2300.25], "median_km": [812.0, 640.5],
                                "country_accuracy": [0.31, 0.35], "country_compared": [50, 50]})
            write_table(knn, base / "knn.parquet")
            n = 50
            distance = rng.gamma(1.0, 800.0, size=2 * n)
            write_table(pd.DataFrame({"image_id": [f"q{i}" for i in range(2 * n)],
                                      "features": "cls", "method": ["top1"] * n + ["weighted_top5"] * n,
                                      "distance_km": distance, "geoscore": 5000 * np.exp(-distance / 1492.7)}),
                        base / "knn_predictions.parquet")
            write_table(pd.DataFrame({"features": ["cls"], "pearson_r": [-0.2], "n_iter": [5]}),
                        base / "geometry.parquet")
            edges = [0, 1, 10, 100, 1000, 10000, 20000]
            write_table(pd.DataFrame({"lo_km": edges[:-1], "hi_km": edges[1:], "count": [0, 4, 30, 80, 60, 9],
                                      "cosine_mean": [np.nan, 0.8, 0.7, 0.6, 0.5, 0.45],
                                      "cosine_std": [np.nan, 0.05, 0.06, 0.07, 0.08, 0.1], "features": "cls"}),
                        base / "geometry_bins.parquet")
            write_table(pd.DataFrame({"seed": [0, 1, 0, 1], "gallery": ["random", "random", "stratified", "stratified"],
                                      "size": 40, "queries": 10, "geoscore": [1800.0, 2000.0, 2200.0, 2500.0],
                                      "median_km": [900.0, 800.0, 700.0, 600.0]}), base / "gallery.parquet")
        if model == "street_a":
            write_table(pd.DataFrame({"metric": ["geoscore", "median_km"], "frozen": [2100.5, 812.0],
                                      "calibrated": [2400.0, 600.0], "change": [299.5, -212.0], "collapse": False}),
                        folder / "calibration.parquet")
    write_failures(results, rng)
    captions = results / "caps" / "captions"
    captions.mkdir(parents=True, exist_ok=True)
    write_table(pd.DataFrame({"entity": ["all"] * 4, "level": ["country"] * 4,
                              "place": ["NA", "FR", "Unknown", "DE"], "count": [5, 3, 2, 0],
                              "share": [0.5, 0.3, 0.2, 0.0]}), captions / "distributions.parquet")
    write_table(pd.DataFrame({"scope": ["all", "subset", "subset"], "subset": ["", "cities", "rural"],
                              "n": [10, 6, 4], "correct": [6, 5, 1], "accuracy": [0.6, 5 / 6, 0.25],
                              "ci_low": [0.31, 0.44, 0.05], "ci_high": [0.83, 0.97, 0.70],
                              "n_unknown": [2, 1, 1]}), captions / "evaluation.parquet")
    write_table(pd.DataFrame({"entity": ["all", "church"], "country": ["", ""], "n": [10, 4],
                              "vendi_image": [3.5, 2.0], "vendi_caption": [4.0, 1.5]}), captions / "diversity.parquet")
    return {"geo": {"streets": ["street_a", "street_b"]}, "captions": ["caps"],
            "failures": {"streets": {"features": "cls", "method": "top1"}}}


FAILURE_IDS = [f"q{i}" for i in range(8)]


def write_failures(results: Path, rng) -> None:
    """The depth study's failures.parquet of the street models (geo.depth.worst_queries and
    worst_probe_errors columns), their manifest and street_a's attention.h5 (street_b has none)."""
    images = results.parent / "street_images"
    images.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, image_id in enumerate(FAILURE_IDS):
        pixels = np.zeros((48, 64, 3), dtype=np.uint8)
        pixels[..., k % 3] = 60 + 20 * k
        Image.fromarray(pixels).save(images / f"{image_id}.jpg")
        paths.append(str(images / f"{image_id}.jpg"))
    write_table(pd.DataFrame({"image_id": FAILURE_IDS, "path": paths}), results / "streets" / "manifest.parquet")
    with h5py.File(results / "streets" / "street_a" / "frozen" / "attention.h5", "w") as store:
        store["ids"] = np.array(FAILURE_IDS, dtype="S")
        store["cls"] = rng.gamma(0.5, size=(len(FAILURE_IDS), 2, 3, 4, 4)).astype(np.float16)
    knn = dict(kind="knn", method="top1", level=None, true_label=None, pred_label=None, confidence=np.nan)
    probe = dict(kind="probe", method="probe", geoscore=np.nan)
    rows = [
        dict(knn, model="street_a", variant="frozen", features="cls", rank=1, image_id="q0", true_country="FR",
             pred_country="JP", distance_km=9712.4, geoscore=7.7, neighbours="q4 q5 q6"),
        dict(knn, model="street_a", variant="frozen", features="cls", rank=2, image_id="q1", true_country="NA",
             pred_country="BR", distance_km=6400.0, geoscore=69.4, neighbours="q5 q6 q7"),
        dict(knn, model="street_a", variant="frozen", features="mean", rank=1, image_id="q7", true_country="NA",
             pred_country="BR", distance_km=6400.0, geoscore=69.4, neighbours="q5 q6 q0"),  # not the page's features
        dict(knn, model="street_a", variant="distcal", features="cls", rank=1, image_id="q3", true_country="DE",
             pred_country="ZA", distance_km=8800.0, geoscore=13.4, neighbours="q2 q4 q5"),
        dict(knn, model="street_b", variant="frozen", features="cls", rank=1, image_id="q1", true_country="NA",
             pred_country="US", distance_km=12000.0, geoscore=1.6, neighbours="q0 q4 q6"),
        dict(probe, model="street_a", variant="frozen", features="cls", level="country", rank=1, image_id="q2",
             true_label="FR", pred_label="DE", true_country="FR", pred_country="DE", confidence=0.934,
             distance_km=880.2, neighbours="q3 q4 q7"),
        dict(probe, model="street_a", variant="frozen", features="cls", level="region", rank=1, image_id="q3",
             true_label="Hessen_DE", pred_label="Bayern_DE", true_country="DE", pred_country="DE", confidence=0.71,
             distance_km=300.5, neighbours="q2 q4 q5"),
    ]
    write_table(pd.DataFrame(rows), results / "streets" / "geo" / "failures.parquet")


def write_plausibility(root: Path, layout: dict) -> dict:
    """A plausibility_faithfulness table for vit_a (cls at layers 2 and 3, a head of layer 3, rollout),
    named in the layout; the view draws cls at layer 3 (head mean) and rollout."""
    from encoderlens.faithfulness.stats import PLAUSIBILITY_COLUMNS
    rows = []
    for method, layer, head, iou in (("cls", 2, -1, 0.1), ("cls", 3, -1, 0.2), ("cls", 3, 0, 0.9),
                                     ("rollout", -1, -1, 0.3)):
        row = dict.fromkeys(PLAUSIBILITY_COLUMNS, 0.5)
        row.update(model="vit_a", variant="frozen", method=method, layer=layer, head=head, threshold=30.0, n=4,
                   iou_mean=iou, iou_ci_low=iou - 0.05, deletion_mean=0.7 - iou, n_maps=3, small_n=True)
        rows.append(row)
    path = root / "plausibility_faithfulness.parquet"
    pd.DataFrame(rows)[PLAUSIBILITY_COLUMNS].to_parquet(path)
    layout["annotated"]["demo"]["faithfulness"] = str(path)
    return layout
