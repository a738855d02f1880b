"""The street-view studies' jobs, composed from the geo library: kNN geolocation, embedding geometry
and the representative gallery, for one embeddings.h5 file and its manifest; and distance calibration.

Every study function takes arrays and tables and returns tables; the workflow scripts only read and
write. `calibrate` trains a LoRA adapter of the image tower (distance calibration): frozen
embeddings, manifest and checkpoint in; the adapter, its training history and the target curve out.
It imports torch when called, so that the table jobs do not.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import h5py
import numpy as np
import pandas as pd

from encoderlens.tables import atomic_folder, write_table

from .calibration import fit_target_curve
from .distance import geolocation_metrics, geoscore, haversine_latlon
from .gallery import group_size_histogram, random_gallery, representative_gallery
from .geometry import anisotropy, binned_cosine, cosine_vs_distance, pair_cosine_distance
from .knn import KnnIndex, knn_geolocate, knn_search, split_gallery_queries, weighted_location
from .places_lookup import PlaceIndex, admin_accuracy, predicted_places

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    import torch

ADMIN_LEVELS = {"country": ("cc", "country"), "region": ("admin1", "region"),
                "sub-region": ("admin2", "sub-region"), "city": ("name", "city")}


def read_features(path, names: Sequence[str]) -> tuple[list[str], dict[str, np.ndarray]]:
    """ids and the named embedding matrices of an embeddings.h5 ("cls", "mean", "cls_raw",
    "layers" for every stored layer as "layers/<l>"); names the file lacks are skipped."""
    with h5py.File(path, "r") as handle:
        ids = [i.decode() if isinstance(i, bytes) else i for i in handle["ids"][()]]
        features = {}
        for name in names:
            if name == "layers" and "layers" in handle:
                for layer in sorted(handle["layers"], key=int):
                    features[f"layers/{layer}"] = handle[f"layers/{layer}"][()]
            elif name in handle:
                features[name] = handle[name][()]
    return ids, features


def open_features(path, names: Sequence[str]) -> tuple[list[str], dict[str, h5py.Dataset]]:
    """`read_features` without reading the matrices: the named datasets of an open embeddings.h5
    (read-only; the file stays open while a dataset is referenced), for streamed probes."""
    handle = h5py.File(path, "r")
    ids = [i.decode() if isinstance(i, bytes) else i for i in handle["ids"][()]]
    features = {}
    for name in names:
        if name == "layers" and "layers" in handle:
            for layer in sorted(handle["layers"], key=int):
                features[f"layers/{layer}"] = handle[f"layers/{layer}"]
        elif name in handle:
            features[name] = handle[name]
    return ids, features


def aligned_manifest(manifest: pd.DataFrame, ids: list[str]) -> pd.DataFrame:
    """The manifest rows in the embedding file's order; an id missing from the manifest is an error."""
    table = manifest.assign(image_id=manifest["image_id"].astype(str)).set_index("image_id")
    missing = [i for i in ids if i not in table.index]
    if missing:
        raise ValueError(f"{len(missing)} embedded images are not in the manifest, e.g. {missing[:3]}")
    return table.loc[ids].reset_index()


def _latlon(table: pd.DataFrame) -> np.ndarray:
    return table[["latitude", "longitude"]].to_numpy(dtype=float)


PREDICTION_COLUMNS = ["image_id", "features", "method", "pred_latitude", "pred_longitude", "distance_km",
                      "geoscore", "neighbour_id", "similarity", "pred_country"]


def knn_plan(n_images: int, query_fraction: float, k: int) -> tuple[int, str]:
    """(k the search can use, note): k is clamped to the gallery size, with a note saying so; below
    two images there is no split, k is 0 and the note says why."""
    if n_images < 2:
        return 0, (f"not computable: {n_images} image(s); kNN needs at least 2 (one gallery image, "
                   f"one query)")
    n_queries = min(max(int(round(n_images * query_fraction)), 1), n_images - 1)
    gallery = n_images - n_queries
    if k > gallery:
        return gallery, (f"geo.knn_k = {k} clamped to {gallery}, the gallery size ({n_images} images, "
                         f"{n_queries} held out as queries)")
    return k, ""


def knn_study(features: dict[str, np.ndarray], table: pd.DataFrame, places: pd.DataFrame,
              query_fraction: float, k: int, seed: int,
              index: KnnIndex | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(metrics per features × method, per-query predictions) of kNN geolocation on one split.

    Methods: `top1` (the nearest gallery image's location) and `weighted_top{k}` (similarity-weighted
    spherical mean of the k nearest). Admin levels through the place of `places` (the admin table,
    `encoderlens.data.geonames.ADMIN_COLUMNS`) that OSV-5M's labelling rule picks for the
    prediction: reverse_geocoder's nearest place (`places_lookup`, rule "reverse_geocoder").
    Every row records the `k` used and a `note`: a k above the gallery size is clamped to it (note
    says so, the method is named by the k used); with fewer than 2 images there is nothing to split,
    and each features set gets rows with computable False and NaN metrics. `index`: exact search
    (default) or an approximate faiss index (`KnnIndex`, config `geo.knn_index`).
    """
    used, note = knn_plan(len(table), query_fraction, k)
    if used == 0:
        log.warning("kNN: %s", note)
        metrics = pd.DataFrame([{"features": name, "method": method, "n": 0, "k": 0, "computable": False,
                                 "note": note} for name in features for method in ("top1", f"weighted_top{k}")])
        return metrics, pd.DataFrame({column: [] for column in PREDICTION_COLUMNS})
    if note:
        log.warning("kNN: %s", note)
    k = used
    gallery_rows, query_rows = split_gallery_queries(len(table), query_fraction, seed)
    place_index = PlaceIndex(places, rule="reverse_geocoder")
    latlon = _latlon(table)
    truth = table.iloc[query_rows].reset_index(drop=True)
    metrics, predictions = [], []
    for name, matrix in features.items():
        # one search serves both methods: the top-1 neighbour is the first of the k
        neighbours, similarity = knn_search(matrix[gallery_rows], matrix[query_rows], k=k, index=index)
        located = latlon[gallery_rows][neighbours]  # (Q, k, 2)
        methods = {"top1": located[:, 0].copy(),
                   f"weighted_top{k}": weighted_location(located, similarity)}
        for method, pred in methods.items():
            row = {"features": name, "method": method, **geolocation_metrics(pred, latlon[query_rows]),
                   "k": k, "computable": True, "note": note}
            nearest = predicted_places(pred, places, place_index)
            for level, result in admin_accuracy(nearest, truth, ADMIN_LEVELS).items():
                row[f"{level}_accuracy"] = result["accuracy"]
                row[f"{level}_compared"] = result["compared"]
            metrics.append(row)
            distance = haversine_latlon(pred, latlon[query_rows])
            predictions.append(pd.DataFrame({
                "image_id": truth["image_id"], "features": name, "method": method,
                "pred_latitude": pred[:, 0], "pred_longitude": pred[:, 1],
                "distance_km": distance, "geoscore": geoscore(distance),
                "neighbour_id": table["image_id"].to_numpy()[gallery_rows[neighbours[:, 0]]],
                "similarity": similarity[:, 0], "pred_country": nearest["cc"].to_numpy(),
            }))
    return pd.DataFrame(metrics), pd.concat(predictions, ignore_index=True)


def geometry_study(features: dict[str, np.ndarray], table: pd.DataFrame, n_pairs: int, seed: int,
                   bins_km: Sequence[float], max_rows: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary per features: correlations, cosine distribution, anisotropy; cosine per distance bin).

    The correlations use `n_pairs` sampled pairs; the anisotropy measures a seeded sample of at most
    `max_rows` rows (None: all; `n` in the summary says how many), so the cost stays flat as the
    dataset grows."""
    summary, bins = [], []
    latlon = _latlon(table)
    n_pairs = min(n_pairs, len(table) * (len(table) - 1) // 2)
    if len(table) < 2:
        note = f"not computable: {len(table)} image(s); pairs need at least 2"
        log.warning("geometry: %s", note)
        return (pd.DataFrame([{"features": name, "n_pairs": 0, "n": len(table), "computable": False,
                               "note": note} for name in features]),
                pd.DataFrame({column: [] for column in ("lo_km", "hi_km", "count", "cosine_mean",
                                                        "cosine_std", "features")}))
    rows = None
    if max_rows is not None and len(table) > max_rows:
        rows = np.sort(np.random.default_rng(seed).choice(len(table), size=max_rows, replace=False))
    for name, matrix in features.items():
        result = cosine_vs_distance(matrix, latlon, n_pairs=n_pairs, seed=seed, bins_km=bins_km)
        bins.append(result.pop("bins").assign(features=name))
        spread = anisotropy(matrix if rows is None else matrix[rows])
        summary.append({"features": name, **result, **spread, "computable": True, "note": ""})
    return pd.DataFrame(summary), pd.concat(bins, ignore_index=True)


def present_group_columns(table: pd.DataFrame, group_columns: Sequence[str]) -> list[str]:
    """The configured gallery groups the manifest has (your own photos may lack OSV-5M's cell, land
    cover, climate, soil; a warning names them); `country` where it has none of them."""
    present = [column for column in group_columns if column in table.columns]
    missing = [column for column in group_columns if column not in table.columns]
    if missing:
        fallback = "" if present else "; grouping by country"
        log.warning("gallery study: the manifest has no column(s) %s (geo.gallery_groups)%s", missing, fallback)
    return present or ["country"]


def gallery_study(matrix: np.ndarray, table: pd.DataFrame, size: int, seeds: Sequence[int],
                  query_fraction: float, group_columns: Sequence[str],
                  max_rows: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(kNN GeoScore of a representative vs a random gallery of the same size, per seed; group sizes).

    Queries are held out first; both galleries are drawn from the remaining images, so they compete
    on the same queries. Above `max_rows` images the study runs on a seeded sample of that many (the
    group-size histogram still counts every image), so its cost stays flat as the dataset grows.
    """
    group_columns = present_group_columns(table, group_columns)
    histogram = group_size_histogram(table, group_columns)
    if max_rows is not None and len(table) > max_rows:
        keep = np.sort(np.random.default_rng(min(seeds, default=0)).choice(len(table), size=max_rows,
                                                                            replace=False))
        matrix, table = matrix[keep], table.iloc[keep].reset_index(drop=True)
    latlon = _latlon(table)
    rows = []
    if len(table) < 2:
        log.warning("gallery study: not computable with %d image(s)", len(table))
        return (pd.DataFrame(columns=["seed", "gallery", "size", "queries", "geoscore", "median_km"]),
                histogram)
    for seed in seeds:
        pool, queries = split_gallery_queries(len(table), query_fraction, seed)
        take = min(size, len(pool))
        choices = {
            "representative": pool[representative_gallery(table.iloc[pool].reset_index(drop=True),
                                                           matrix[pool], take, seed=seed,
                                                           group_columns=group_columns)],
            "random": pool[random_gallery(len(pool), take, seed=seed)],
        }
        for kind, gallery in choices.items():
            pred, _, _ = knn_geolocate(matrix[gallery], latlon[gallery], matrix[queries])
            metrics = geolocation_metrics(pred, latlon[queries])
            rows.append({"seed": seed, "gallery": kind, "size": len(gallery), "queries": len(queries),
                         "geoscore": metrics["geoscore"], "median_km": metrics["median_km"]})
    return pd.DataFrame(rows), histogram


# ---- distance calibration ----------------------------------------------------------------------
# The target curve is fitted on the frozen embeddings of the gallery images only (pairs sampled as in
# the geometry study), and only gallery images train, so the kNN queries stay unseen.


def differentiable_features(adapter, pixels: torch.Tensor, feature: str) -> torch.Tensor:
    """The named embedding (cls, mean, cls_raw) with gradients."""
    value = getattr(adapter.encode_with_grad(pixels), feature)
    if value is None:
        raise ValueError(f"{adapter.family} has no {feature!r} embedding to calibrate")
    return value


def target_curve_for(embeddings: np.ndarray, latlon: np.ndarray, n_pairs: int, seed: int, bins_km):
    _, _, cosine, distance = pair_cosine_distance(embeddings, latlon, n_pairs=n_pairs, seed=seed)
    return fit_target_curve(binned_cosine(cosine, distance, bins_km))


def calibrate(manifest_path, frozen_embeddings, model_folder, family: str, image_size: int | None,
              settings: dict, out_folder, threads: int = 1, device: str = "cpu") -> None:
    """Train the adapter; writes `adapter/` (peft, safetensors), `history.csv`, `target_curve.parquet`."""
    import torch

    from encoderlens.extract.run import ImageFiles, resolve_device
    from encoderlens.finetune.lora import LoraSettings, save_lora_adapter, wrap_with_lora
    from encoderlens.models.registry import load_adapter

    from .calibrated_tuning import CalibrationSettings, train

    torch.set_num_threads(max(1, threads))
    out_folder = Path(out_folder)
    feature = settings["feature"]
    ids, features = read_features(frozen_embeddings, [feature])
    if feature not in features:
        raise ValueError(f"{frozen_embeddings} has no /{feature} embeddings to calibrate")
    table = aligned_manifest(pd.read_parquet(manifest_path), ids)
    gallery, _ = split_gallery_queries(len(table), settings["query_fraction"], settings["seed"])
    latlon = table[["latitude", "longitude"]].to_numpy(dtype=float)[gallery]
    n_pairs = min(settings["curve_pairs"], len(gallery) * (len(gallery) - 1) // 2)
    curve = target_curve_for(features[feature][gallery], latlon, n_pairs, settings["seed"],
                             settings["distance_bins_km"])
    print(f"{len(gallery)} gallery images train; target cosine {np.round(curve.cosine, 4).tolist()} "
          f"at {np.round(curve.distance_km, 1).tolist()} km", file=sys.stderr)

    torch.manual_seed(settings["seed"])
    adapter = load_adapter(family, model_folder, image_size=image_size)
    run_device = resolve_device(device)
    wrap_with_lora(adapter, LoraSettings(rank=settings["lora_rank"], alpha=settings["lora_alpha"],
                                         dropout=settings["lora_dropout"]))
    adapter.to(run_device)
    adapter.model.train()
    images = ImageFiles(table["path"].to_numpy()[gallery].tolist(), adapter.preprocess)
    trainable = [p for p in adapter.model.parameters() if p.requires_grad]
    work = out_folder.with_name(out_folder.name + ".work")
    bf16 = run_device.type == "cuda" and settings.get("precision") == "bf16"

    def embed(pixels):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            return differentiable_features(adapter, pixels, feature)

    history = train(embed, trainable,
                    lambda rows: torch.stack([images[int(r)] for r in rows]), latlon, curve,
                    CalibrationSettings(epochs=settings["epochs"], batch_size=settings["batch_size"],
                                        lr=settings["lr"], seed=settings["seed"]),
                    work, device=run_device)

    with atomic_folder(out_folder) as staging:
        save_lora_adapter(adapter.model, staging / "adapter")
        write_table(history, staging / "history.csv")
        curve.to_table().to_parquet(staging / "target_curve.parquet")
        (staging / "training.json").write_text(json.dumps(
            {"feature": feature, "train_images": int(len(gallery)),
             "trainable_parameters": int(sum(p.numel() for p in trainable)),
             **{k: settings[k] for k in ("epochs", "batch_size", "lr", "lora_rank", "lora_alpha", "lora_dropout",
                                         "seed")}},
            indent=1))
    shutil.rmtree(work, ignore_errors=True)
