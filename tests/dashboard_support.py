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

    png = page.locator(f"#page-image .panel[data-variant='{variant}'] canvas").screenshot()
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
    return {"iou": text(row.iou), "coverage": text(row.coverage), "pointing": text(row.pointing_hit)}
