"""The static dashboard: `results/dashboard/index.html` plus its data, openable from `file://`.

Layout of the site (every data file is a <script> that calls a registration function of app.js, since
browsers block fetch() of local files):

    index.html, assets/app.js, assets/style.css
    data/index.js                          datasets, image list, leaderboard, geo and caption tables
    data/<dataset>/images/<nnnn>.js        one image: every model x variant x method map + scores
    data/<dataset>/features/<model>.js     per-feature mean scores of one model (or "baseline")
    img/<dataset>/<nnnn>.jpg, <nnnn>_thumb.jpg

The page loads data/index.js at start and an image's or a model's file when it is first shown.
The whole folder is written beside the target and renamed into place when complete.
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image

from .. import __version__
from ..data.images import as_rgb
from .dashboard_data import (annotated_images, attention_entries, baseline_scores, computed_summary,
                             feature_table, image_boxes, leaderboard_table, table_payload)
from ..tables import atomic_folder
from .dashboard_encode import js_call

log = logging.getLogger(__name__)

ASSETS = ("app.js", "style.css", "index.html")
GEO_TABLES = ("probes", "knn", "geometry")


def read_table(path: Path, what: str) -> pd.DataFrame:
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing {what} (the dashboard needs it)")
    try:
        return pd.read_parquet(path)
    except Exception as error:
        raise ValueError(f"{path}: cannot read {what}: {error}") from error


def _write_text(path: Path, text: str) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return len(text.encode("utf-8"))


def _write_images(source: Path, display: Path, thumb: Path, settings: dict) -> tuple[int, int]:
    """Display copy and thumbnail of one image, pixels as the models saw them (no EXIF rotation)."""
    if not source.exists():
        raise FileNotFoundError(f"{source}: image listed in the manifest is missing")
    display.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(source) as image:
        image = as_rgb(image)
        width, height = image.size
        for path, side in ((display, settings["display_size"]), (thumb, settings["thumbnail_size"])):
            copy = image.copy()
            copy.thumbnail((side, side), Image.LANCZOS)
            copy.save(path, format="JPEG", quality=settings["jpeg_quality"])
    return width, height


def _annotated_dataset(name: str, spec: dict, results: Path, site: Path, settings: dict) -> dict:
    folder = results / name
    manifest = read_table(folder / "manifest.parquet", "manifest")
    annotations = read_table(folder / "annotations.parquet", "annotations")
    images = annotated_images(manifest, annotations)
    if settings.get("max_images"):
        images = images.head(settings["max_images"])
    image_ids = list(images["image_id"])
    features = sorted(annotations["feature"].astype(str).unique())

    alignment_frames, per_image = [], {image_id: [] for image_id in image_ids}
    model_entries = []
    thresholds = [float(t) for t in spec["thresholds"]]
    for model, variants in spec["models"].items():
        feature_parts = []
        for variant in variants:
            base = folder / model / variant
            alignment = read_table(base / "alignment.parquet", "alignment scores")
            alignment_frames.append(alignment)
            feature_parts.append(read_table(base / "alignment_features.parquet", "per-feature scores"))
            entries = attention_entries(base / "attention.h5", alignment, model, variant, image_ids,
                                        thresholds, spec.get("analysis_size"))
            for image_id, image_entries in entries.items():
                per_image[image_id] += image_entries
        model_entries.append({"name": model, "variants": list(variants)})
        _write_text(site / "data" / name / "features" / f"{model}.js",
                    js_call("registerFeatures", name, model, feature_table(pd.concat(feature_parts))))

    baselines = read_table(folder / "baselines" / "alignment.parquet", "baseline scores")
    baseline_features = read_table(folder / "baselines" / "alignment_features.parquet",
                                   "baseline per-feature scores")
    _write_text(site / "data" / name / "features" / "baseline.js",
                js_call("registerFeatures", name, "baseline", feature_table(baseline_features)))

    summary_path = spec.get("summary")
    if summary_path and Path(summary_path).exists():
        summary, source = read_table(Path(summary_path), "statistics summary"), "statistics"
        try:
            leaderboard = leaderboard_table(summary)
        except ValueError as error:
            raise ValueError(f"{summary_path}: {error}") from None
    else:
        summary = computed_summary(pd.concat(alignment_frames + [baselines], ignore_index=True))
        source = "computed"
        leaderboard = leaderboard_table(summary)

    image_list = []
    for index, row in enumerate(images.itertuples()):
        stem = f"{index:04d}"
        display = site / "img" / name / f"{stem}.jpg"
        thumb = site / "img" / name / f"{stem}_thumb.jpg"
        width, height = _write_images(Path(row.path), display, thumb, settings)
        data_file = site / "data" / name / "images" / f"{stem}.js"
        payload = {"entries": per_image[row.image_id],
                   "baselines": baseline_scores(baselines, row.image_id, thresholds)}
        _write_text(data_file, js_call("registerImage", name, row.image_id, payload))
        image_list.append({
            "id": row.image_id, "data": data_file.relative_to(site).as_posix(),
            "image": display.relative_to(site).as_posix(), "thumb": thumb.relative_to(site).as_posix(),
            "width": width, "height": height,
            "boxes": image_boxes(annotations, row.image_id, features),
        })
    log.info("dashboard: %s: %d annotated images, %d models", name, len(image_list), len(model_entries))
    return {
        "name": name, "thresholds": thresholds, "features": features, "models": model_entries,
        "baselines": sorted(baselines["method"].astype(str).unique()), "images": image_list,
        "leaderboard": {"source": source, "table": leaderboard},
    }


def _geo_dataset(name: str, models: list[str], results: Path) -> dict:
    tables: dict[str, Any] = {}
    for table in GEO_TABLES:
        parts = []
        for model in models:
            folder = results / name / model
            path = folder / "probes.parquet" if table == "probes" else folder / "frozen" / f"{table}.parquet"
            if path.exists():
                parts.append((model, read_table(path, f"{table} table")))
        if parts:
            frames = [frame.assign(model=model) for model, frame in parts]
            merged = pd.concat(frames, ignore_index=True)
            merged = merged[["model"] + [c for c in merged.columns if c != "model"]]
            tables[table] = table_payload(merged)
    return {"dataset": name, "tables": tables}


def _caption_dataset(name: str, results: Path) -> dict:
    path = results / name / "captions" / "distributions.parquet"
    return {"dataset": name, "distributions": table_payload(read_table(path, "caption distributions"))}


def _copy_assets(site: Path, index_script: str) -> None:
    assets = resources.files("encoderlens.report") / "dashboard_assets"
    (site / "assets").mkdir(parents=True, exist_ok=True)
    for name in ASSETS:
        text = (assets / name).read_text(encoding="utf-8")
        if name == "index.html":
            _write_text(site / "index.html", text.replace("{{INDEX_SCRIPT}}", index_script))
        else:
            _write_text(site / "assets" / name, text)


def build_dashboard(layout: dict, output: str | Path, settings: dict, results: str | Path = "results") -> Path:
    """Write the dashboard for `layout` into the folder `output`.

    layout: {"annotated": {dataset: {"models": {model: [variants]}, "thresholds": [...],
                                    "analysis_size": int | None, "summary": path | None}},
             "geo": {dataset: [models]}, "captions": [dataset, ...]}
    settings: display_size, thumbnail_size, jpeg_quality, max_images (0 = all).
    """
    output, results = Path(output), Path(results)
    with atomic_folder(output) as site:
        index = {
            "version": __version__,
            "datasets": [_annotated_dataset(name, spec, results, site, settings)
                         for name, spec in layout.get("annotated", {}).items()],
            "geo": [_geo_dataset(name, models, results) for name, models in layout.get("geo", {}).items()],
            "captions": [_caption_dataset(name, results) for name in layout.get("captions", [])],
        }
        _write_text(site / "data" / "index.js", js_call("registerIndex", index))
        _copy_assets(site, "data/index.js")
    return output
