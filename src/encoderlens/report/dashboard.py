"""The static dashboard: `results/dashboard/index.html` plus its data, openable from `file://`.

Layout of the site (every data file is a <script> that calls a registration function of app.js, since
browsers block fetch() of local files):

    index.html, assets/app.js, assets/style.css
    data/index.js                          datasets, image list, leaderboard, geo and caption tables
    data/<dataset>/images/<nnnn>.js        one image: every model x variant x method map + scores
    data/<dataset>/features/<model>.js     per-feature mean scores of one model (or "baseline")
    img/<dataset>/<nnnn>.jpg, <nnnn>_thumb.jpg
    img/<dataset>/failures/<nnnn>.jpg, <nnnn>_thumb.jpg   the street-view failures and their neighbours

The page loads data/index.js at start and an image's or a model's file when it is first shown.
The whole folder is written beside the target and renamed into place when complete.
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
from PIL import Image

from .. import __version__
from ..data.images import as_rgb
from ..geo.depth import shown_failures
from .dashboard_data import (annotated_images, attention_entries, baseline_scores, computed_summary,
                             feature_table, gallery_scores, image_boxes, leaderboard_table, table_payload)
from ..tables import atomic_folder
from .figures import reference_threshold
from .figures_geo import GEOSCORE_MAX, probe_table
from .figures_geo_depth import failure_attention
from .dashboard_encode import b85, columns, js_call, quantise_maps

log = logging.getLogger(__name__)

ASSETS = ("app.js", "style.css", "index.html")


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

    faithfulness = None
    faithfulness_path = spec.get("faithfulness")
    if faithfulness_path and Path(faithfulness_path).exists():
        from .figures_faithfulness import plausibility_points
        points = plausibility_points(read_table(Path(faithfulness_path), "plausibility vs faithfulness"))
        faithfulness = columns(points.drop(columns="small_n"), decimals=6)

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
    reference = reference_threshold(thresholds, spec.get("reference_threshold"))
    return {
        "name": name, "thresholds": thresholds, "features": features, "models": model_entries,
        "reference_threshold": reference,
        "gallery_scores": gallery_scores(pd.concat(alignment_frames, ignore_index=True), image_ids, reference),
        "earlier": bool(spec.get("earlier")),
        "baselines": sorted(baselines["method"].astype(str).unique()), "images": image_list,
        "leaderboard": {"source": source, "table": leaderboard},
        "faithfulness": faithfulness,
    }


# Geo tables per model: (file under results/<dataset>/<model>/, per variant or not); variants are the
# extraction folders holding that file (frozen, and distcal where the calibration ran)
GEO_FILES = {"probes": ("probes.parquet", False), "knn": ("knn.parquet", True),
             "knn_predictions": ("knn_predictions.parquet", True), "geometry": ("geometry.parquet", True),
             "geometry_bins": ("geometry_bins.parquet", True), "gallery": ("gallery.parquet", True),
             "calibration": ("calibration.parquet", False)}
# internals of a fit or a sample, shown only in the tables under "details"
GEO_INTERNALS = ("n_iter", "converged", "stratified", "note", "dropped_classes", "n_missing")
GEOSCORE_BINS = np.linspace(0.0, GEOSCORE_MAX, 21)


def _geo_frames(name: str, models: list[str], results: Path) -> dict[str, pd.DataFrame]:
    frames: dict[str, list[pd.DataFrame]] = {}
    for model in models:
        folder = results / name / model
        for table, (filename, per_variant) in GEO_FILES.items():
            if per_variant:
                paths = [(p.parent.name, p) for p in sorted(folder.glob(f"*/{filename}"))]
            else:
                paths = [(None, folder / filename)] if (folder / filename).exists() else []
            for variant, path in paths:
                frame = read_table(path, f"{table} table").assign(model=model)
                if variant is not None:
                    frame = frame.assign(variant=variant)
                frames.setdefault(table, []).append(frame)
    merged = {}
    for table, parts in frames.items():
        frame = pd.concat(parts, ignore_index=True)
        labels = [c for c in ("model", "variant") if c in frame.columns]
        merged[table] = frame[labels + [c for c in frame.columns if c not in labels]]
    return merged


def geoscore_histograms(predictions: pd.DataFrame) -> pd.DataFrame:
    """Counts of per-query GeoScores in GEOSCORE_BINS per model, variant, features and method."""
    keys = [c for c in ("model", "variant", "features", "method") if c in predictions.columns]
    rows = []
    for key, group in predictions.groupby(keys, sort=True):
        counts, _ = np.histogram(group["geoscore"].to_numpy(dtype=float), bins=GEOSCORE_BINS)
        rows += [dict(zip(keys, key), lo=float(lo), hi=float(hi), count=int(c))
                 for lo, hi, c in zip(GEOSCORE_BINS[:-1], GEOSCORE_BINS[1:], counts)]
    return pd.DataFrame(rows)


# what the failures page lists of failures.parquet (geo.depth): per row, the image and its neighbours
FAILURE_COLUMNS = ["model", "variant", "kind", "features", "method", "level", "rank", "image_id", "true",
                   "predicted", "distance_km", "geoscore", "confidence", "neighbours"]


def _geo_failures(name: str, results: Path, site: Path, settings: dict, spec: dict | None) -> dict | None:
    """The failures page of one street-view dataset (None without geo/failures.parquet): the rows of
    `shown_failures` for the kNN features and method of `spec` (else the first listed), every image
    and nearest gallery neighbour copied under img/<dataset>/failures/, and each failure's attention
    map from its model's frozen attention.h5 (8-bit, as the image page's maps)."""
    path = results / name / "geo" / "failures.parquet"
    if not path.exists():
        return None
    spec = spec or {}
    rows = shown_failures(read_table(path, "failures"), spec.get("features"), spec.get("method", "top1"))
    rows = rows.reindex(columns=FAILURE_COLUMNS)
    rows["neighbours"] = rows["neighbours"].fillna("").astype(str)
    rows["level"] = rows["level"].fillna("").astype(str)
    paths = read_table(results / name / "manifest.parquet", "manifest")
    paths = paths.assign(image_id=paths["image_id"].astype(str)).set_index("image_id")["path"].astype(str)
    failed = set(rows["image_id"].astype(str))
    wanted = list(dict.fromkeys([*rows["image_id"].astype(str),
                                 *(n for listed in rows["neighbours"] for n in listed.split())]))
    images = {}
    for k, image_id in enumerate(i for i in wanted if i in paths.index):
        thumb = site / "img" / name / "failures" / f"{k:04d}_thumb.jpg"
        if image_id in failed:
            display = site / "img" / name / "failures" / f"{k:04d}.jpg"
            width, height = _write_images(Path(paths[image_id]), display, thumb, settings)
        else:  # only shown as a neighbour: the thumbnail is all the page draws
            display = thumb
            width, height = _write_images(Path(paths[image_id]), thumb, thumb,
                                          {**settings, "display_size": settings["thumbnail_size"]})
        images[image_id] = {"image": display.relative_to(site).as_posix(),
                            "thumb": thumb.relative_to(site).as_posix(), "width": width, "height": height}
    maps, keys = [], []
    for model, own in rows[rows["variant"] == "frozen"].groupby("model", sort=False):
        attention = results / name / str(model) / "frozen" / "attention.h5"
        if not attention.exists():
            continue
        with h5py.File(attention, "r") as store:
            position = {i.decode() if isinstance(i, bytes) else str(i): r for r, i in enumerate(store["ids"][()])}
            for image_id in dict.fromkeys(own["image_id"].astype(str)):
                grid = failure_attention(store, position[image_id]) if image_id in position else None
                if grid is not None:
                    maps.append(grid)
                    keys.append(f"{model}|{image_id}")
    encoded = {}
    if maps:
        codes, ranges = quantise_maps(np.stack(maps))
        for key, code, (lo, hi) in zip(keys, codes, ranges):
            encoded[key] = {"grid": list(code.shape), "map": b85(code),
                            "range": [None if not np.isfinite(lo) else float(lo), None if not np.isfinite(hi) else float(hi)]}
    log.info("dashboard: %s: %d failures, %d images, %d attention maps", name, len(rows), len(images), len(encoded))
    return {"table": table_payload(rows), "images": images, "maps": encoded}


def _geo_dataset(name: str, models: list[str], results: Path, site: Path | None = None,
                 settings: dict | None = None, failures: dict | None = None) -> dict:
    frames = _geo_frames(name, models, results)
    charts: dict[str, Any] = {}
    probes = frames.get("probes")
    if probes is not None and {"n_test", "majority_top1", "probeable"} <= set(probes.columns):
        charts["probes"] = table_payload(probe_table(probes))
    if "knn_predictions" in frames and "geoscore" in frames["knn_predictions"].columns:
        charts["geoscore"] = table_payload(geoscore_histograms(frames.pop("knn_predictions")))
    frames.pop("knn_predictions", None)  # per query: too large for the page, summarised above
    for table in ("knn", "geometry_bins", "gallery", "calibration"):
        if table in frames:
            charts[table] = table_payload(frames[table].drop(columns=[c for c in GEO_INTERNALS
                                                                      if c in frames[table].columns]))
    tables = {table: table_payload(frame) for table, frame in frames.items()}
    payload = {"dataset": name, "charts": charts, "tables": tables}
    if site is not None:
        shown = _geo_failures(name, results, site, settings or {}, failures)
        if shown is not None:
            payload["failures"] = shown
    return payload


CAPTION_TABLES = ("distributions", "evaluation", "diversity")


def _caption_dataset(name: str, results: Path) -> dict:
    folder = results / name / "captions"
    payload = {"dataset": name,
               "distributions": table_payload(read_table(folder / "distributions.parquet", "caption distributions"))}
    for table in CAPTION_TABLES[1:]:
        if (folder / f"{table}.parquet").exists():
            payload[table] = table_payload(read_table(folder / f"{table}.parquet", f"caption {table}"))
    return payload


def earlier_datasets(results: Path, layout: dict) -> dict:
    """Datasets under `results/` that `layout` does not name: the outputs of an earlier run with another
    config (the demo before a preset, one preset before another). They keep their pages; their models,
    variants and thresholds are read from the files they left."""
    named = set(layout.get("annotated", {})) | set(layout.get("geo", {})) | set(layout.get("captions", []))
    found: dict[str, Any] = {"annotated": {}, "geo": {}, "captions": []}
    if not results.is_dir():
        return found
    for folder in sorted(p for p in results.iterdir() if p.is_dir() and p.name not in named):
        if (folder / "annotations.parquet").exists() and (folder / "baselines" / "alignment.parquet").exists():
            models: dict[str, list[str]] = {}
            for path in sorted(folder.glob("*/*/alignment.parquet")):
                base = path.parent
                if base.parent.name != "baselines" and (base / "attention.h5").exists() and \
                        (base / "alignment_features.parquet").exists():
                    models.setdefault(base.parent.name, []).append(base.name)
            if not models:
                continue
            models = {m: sorted(v, key=lambda x: (x != "frozen", x)) for m, v in models.items()}
            first = next(iter(models.items()))
            thresholds = sorted(pd.read_parquet(folder / first[0] / first[1][0] / "alignment.parquet",
                                                columns=["threshold"])["threshold"].dropna().unique().tolist())
            summary = results / "stats" / folder.name / "alignment_summary.parquet"
            found["annotated"][folder.name] = {
                "models": models, "thresholds": thresholds, "analysis_size": None,
                "summary": str(summary) if summary.exists() else None, "earlier": True}
        elif list(folder.glob("*/probes.parquet")) or list(folder.glob("*/frozen/knn.parquet")):
            found["geo"][folder.name] = sorted({p.parent.name for p in folder.glob("*/probes.parquet")} |
                                               {p.parent.parent.name for p in folder.glob("*/frozen/knn.parquet")})
        elif (folder / "captions" / "distributions.parquet").exists():
            found["captions"].append(folder.name)
    return found


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
                                    "analysis_size": int | None, "summary": path | None,
                                    "reference_threshold": float | None}},
             "geo": {dataset: [models]}, "captions": [dataset, ...],
             "failures": {dataset: {"features", "method"}}}  (the kNN the failures page lists; a street-view
             dataset with results/<dataset>/geo/failures.parquet gets the page, else the first features)
    settings: display_size, thumbnail_size, jpeg_quality, max_images (0 = all), earlier_runs (default
    True: datasets left under `results` by runs of other configs keep their pages, see
    `earlier_datasets`).
    """
    output, results = Path(output), Path(results)
    earlier = earlier_datasets(results, layout) if settings.get("earlier_runs", True) else {}
    for kind, names in earlier.items():
        if names:
            log.info("dashboard: also showing %s from earlier runs (not in this config): %s", kind,
                     ", ".join(names))
    annotated = {**layout.get("annotated", {}), **earlier.get("annotated", {})}
    geo = {**layout.get("geo", {}), **earlier.get("geo", {})}
    captions = list(layout.get("captions", [])) + list(earlier.get("captions", []))
    with atomic_folder(output) as site:
        index = {
            "version": __version__,
            "datasets": [_annotated_dataset(name, spec, results, site, settings)
                         for name, spec in annotated.items()],
            "geo": [_geo_dataset(name, models, results, site, settings, layout.get("failures", {}).get(name))
                    | {"earlier": name in earlier.get("geo", {})} for name, models in geo.items()],
            "captions": [_caption_dataset(name, results) | {"earlier": name in earlier.get("captions", [])}
                         for name in captions],
        }
        _write_text(site / "data" / "index.js", js_call("registerIndex", index))
        _copy_assets(site, "data/index.js")
    return output
