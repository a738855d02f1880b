"""The faithfulness table of one dataset x model x variant: deletion and insertion curves of every
stored map method (whatever the attention.h5 holds, read through the registry), per image.

Which maps: for each method the registry reads, its variants (layer x head) are filtered by `heads`
(`mean`, the default: the head mean and maps without heads; `all`: every head too) and `layers`
(`all` kept layers, the default, or the `last` one; maps that are not per layer are always kept).
Which images: those with expert boxes (so that faithfulness pairs with plausibility, the alignment
IoU), in attention.h5 order, at most `max_images` (null: all).

The model is loaded as extraction loads it (`load_adapter`, the variant's tuned weights on top) and
records the scalar extraction's gradient methods explain (`attention.targets.ExplainedScalar`): a
fine-tuned variant whose folder holds `head.safetensors` its head's logit of each image's predicted
class on the pooled embedding (`class_score`, not relative: curves start at that logit); otherwise
the config's `target` (`self_similarity`, relative: curves start at 1). The `target` column says which.

Tables (`COLUMNS`, `CURVE_COLUMNS`): one row per image x method x layer x head x order with
`deletion_auc`, `insertion_auc`, and the curves in long form (one row per step and curve kind).
`head` is -1 for the head mean and for maps without heads, `layer` -1 for maps not per layer (as in
alignment.parquet). The random order does not depend on the map: it is evaluated once per image and
its values repeat on every map's `random` rows. A map that is not finite or constant ranks nothing:
its `map` and `inverse` rows have `scorable` False and NaN scores.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np
import pandas as pd
import torch
from PIL import Image

from encoderlens.alignment.baselines import image_seed
from encoderlens.attention.methods import available_methods, read_method
from encoderlens.attention.targets import ExplainedScalar

from .curves import (CURVES, DEFAULT_BATCH_SIZE, DEFAULT_STEPS, ORDERS, deletion_insertion, rank_cells,
                     target_scorer, to_grid)

log = logging.getLogger(__name__)

KEYS = ["image_id", "model", "variant", "method", "layer", "head", "order"]
COLUMNS = [*KEYS, "deletion_auc", "insertion_auc", "scorable", "n_cells", "steps", "perturbation", "target"]
CURVE_COLUMNS = [*KEYS, "curve", "step", "fraction", "value"]
HEAD_CHOICES = ("mean", "all")
LAYER_CHOICES = ("all", "last")
IMAGES_PER_CHUNK = 8  # images whose curves share one set of batched forward passes


def _head_index(label: str) -> int:
    return int(label) if str(label).isdigit() else -1


def chosen_variants(layer: np.ndarray, head: np.ndarray, heads: str = "mean", layers: str = "all") -> np.ndarray:
    """Indices of the map variants (a method's `MethodMaps` columns) to evaluate."""
    if heads not in HEAD_CHOICES:
        raise ValueError(f"faithfulness heads must be one of {HEAD_CHOICES}, got {heads!r}")
    if layers not in LAYER_CHOICES:
        raise ValueError(f"faithfulness layers must be one of {LAYER_CHOICES}, got {layers!r}")
    keep = np.ones(len(layer), dtype=bool)
    if heads == "mean":
        keep &= np.array([str(h) in ("mean", "") for h in head])
    if layers == "last":
        per_layer = layer >= 0
        if per_layer.any():
            keep &= ~per_layer | (layer == layer[per_layer].max())
    return np.flatnonzero(keep)


def _rankable(maps: np.ndarray) -> np.ndarray:
    flat = maps.reshape(len(maps), -1)
    return np.isfinite(flat).all(axis=1) & (np.nanmax(flat, axis=1) > np.nanmin(flat, axis=1))


def faithfulness_curves(pixels: torch.Tensor, image_ids: Sequence[str], maps: dict[str, tuple], scorer,
                        grid: tuple[int, int], orders: Sequence[str] = ORDERS, steps: int = DEFAULT_STEPS,
                        perturbation: str = "mean", blur_sigma: float = 4.0, seed: int = 0,
                        batch_size: int = DEFAULT_BATCH_SIZE) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(scores, curves) of a chunk of images. `maps`: {method: (maps (n, V, h, w), layer (V,), head (V,))}
    for the same n images as `pixels`. Rows are labelled by image, method, layer, head, order."""
    n = len(image_ids)
    rankings, image_of, labels, scorable = [], [], [], []
    random_rows = {}
    if "random" in orders:
        seeds = [image_seed(seed, image_id) for image_id in image_ids]
        random_rankings = rank_cells(np.zeros((n, grid[0] * grid[1])), "random", seeds)
        for i in range(n):
            random_rows[i] = len(rankings)
            rankings.append(random_rankings[i])
            image_of.append(i)
            labels.append(None)
            scorable.append(True)
    for method, (method_maps, layer, head) in maps.items():
        n_variants = method_maps.shape[1]
        on_grid = to_grid(method_maps.reshape(n * n_variants, *method_maps.shape[2:]), grid)
        ok = _rankable(on_grid)
        on_grid = np.where(ok[:, None, None], on_grid, 0.0)
        for order in orders:
            if order == "random":
                continue
            ranked = rank_cells(on_grid, order)
            for flat, ranking in enumerate(ranked):
                i, v = divmod(flat, n_variants)
                rankings.append(ranking)
                image_of.append(i)
                labels.append((i, method, int(layer[v]), _head_index(head[v]), order))
                scorable.append(bool(ok[flat]))
    if not rankings:
        return pd.DataFrame(columns=COLUMNS[:-4]), pd.DataFrame(columns=CURVE_COLUMNS)
    curves = deletion_insertion(pixels, np.stack(rankings), np.array(image_of), scorer, grid, steps,
                                perturbation, blur_sigma, batch_size)
    deletion_auc, insertion_auc = curves.deletion_auc, curves.insertion_auc
    # the rows the table reports: every map's own orders, then per map the random order of its image
    table_rows, seen_maps = [], {}
    for row, label in enumerate(labels):
        if label is None:
            continue
        i, method, layer_, head_, order = label
        table_rows.append((image_ids[i], method, layer_, head_, order, row, scorable[row]))
        seen_maps.setdefault((i, method, layer_, head_), None)
    if "random" in orders:
        for i, method, layer_, head_ in seen_maps:
            table_rows.append((image_ids[i], method, layer_, head_, "random", random_rows[i], True))
    frame = pd.DataFrame(table_rows, columns=["image_id", "method", "layer", "head", "order", "row", "scorable"])
    source = frame["row"].to_numpy()
    ok = frame["scorable"].to_numpy()
    frame["deletion_auc"] = np.where(ok, deletion_auc[source], np.nan)
    frame["insertion_auc"] = np.where(ok, insertion_auc[source], np.nan)
    long = []
    for kind, values in zip(CURVES, (curves.deletion, curves.insertion)):
        chosen = np.where(ok[:, None], values[source], np.nan)
        k = len(curves.fractions)
        long.append(pd.DataFrame({
            **{key: np.repeat(frame[key].to_numpy(), k) for key in ("image_id", "method", "layer", "head", "order")},
            "curve": kind, "step": np.tile(np.arange(k), len(frame)),
            "fraction": np.tile(curves.fractions, len(frame)), "value": chosen.ravel()}))
    return frame.drop(columns="row"), pd.concat(long, ignore_index=True)


def _load_adapter(family: str, model_folder, image_size, tuned_folder, device: str):
    from encoderlens.extract.run import resolve_device
    from encoderlens.models.registry import load_adapter
    from encoderlens.models.tuned import apply_tuned_weights

    adapter = load_adapter(family, model_folder, image_size=image_size)
    if tuned_folder is not None:
        model, _ = apply_tuned_weights(adapter.model, tuned_folder)
        adapter.model = model.eval()
    return adapter.to(resolve_device(device))


def faithfulness_file(attention_path, manifest: pd.DataFrame, annotations: pd.DataFrame, model_folder,
                      family: str, model: str, variant: str, settings: dict, image_size: int | None = None,
                      tuned_folder=None, device: str = "cpu", threads: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(faithfulness, curves) of every stored map of the annotated images of one attention.h5."""
    torch.set_num_threads(max(1, threads))
    started = time.perf_counter()
    adapter = _load_adapter(family, model_folder, image_size, tuned_folder, device)
    grid = (adapter.info.grid_h, adapter.info.grid_w)
    explained = ExplainedScalar.for_variant(tuned_folder)
    target = explained.name if explained.head is not None else settings.get("target", "self_similarity")
    head = None if explained.head is None else explained.head.to(adapter.device)
    paths = dict(zip(manifest["image_id"].astype(str), manifest["path"]))
    annotated = set(annotations["image_id"].astype(str))
    encode = lambda batch: adapter.encode(batch, attentions=False).cls  # noqa: E731
    scores, curves = [], []
    with h5py.File(attention_path, "r") as store:
        ids = [i.decode() if isinstance(i, bytes) else str(i) for i in store["ids"][()]]
        rows = [(row, image_id) for row, image_id in enumerate(ids) if image_id in annotated]
        if settings.get("max_images") is not None:
            rows = rows[:settings["max_images"]]
        missing = [image_id for _, image_id in rows if image_id not in paths]
        if missing:
            raise ValueError(f"{attention_path}: images {missing[:3]} are not in the manifest")
        methods = available_methods(store)
        wanted = settings.get("methods")
        if wanted is not None:
            methods = [m for m in methods if m in wanted]
        for first in range(0, len(rows), IMAGES_PER_CHUNK):
            chunk = rows[first:first + IMAGES_PER_CHUNK]
            image_ids = [image_id for _, image_id in chunk]
            pixels = []
            for image_id in image_ids:
                with Image.open(paths[image_id]) as image:
                    pixels.append(adapter.preprocess(image))
            pixels = torch.stack(pixels).to(adapter.device)
            with torch.no_grad():
                reference = encode(pixels)
            scorer = target_scorer(encode, reference, target, head)
            maps = {}
            for method in methods:
                read = read_method(method, store, np.array([row for row, _ in chunk]))
                keep = chosen_variants(read.layer, read.head, settings["heads"], settings["layers"])
                if len(keep):
                    maps[method] = (read.maps[:, keep], read.layer[keep], read.head[keep])
            frame, long = faithfulness_curves(pixels, image_ids, maps, scorer, grid, settings["orders"],
                                              settings["steps"], settings["perturbation"],
                                              settings["blur_sigma"], settings["seed"], settings["batch_size"])
            scores.append(frame)
            curves.append(long)
    label = {"model": model, "variant": variant}
    table = pd.concat(scores, ignore_index=True) if scores else pd.DataFrame(columns=COLUMNS)
    table = table.assign(**label, n_cells=grid[0] * grid[1], steps=settings["steps"],
                         perturbation=settings["perturbation"], target=target)
    long = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(columns=CURVE_COLUMNS)
    long = long.assign(**label)
    table = table.astype({"layer": int, "head": int, "scorable": bool}) if len(table) else table
    log.info("%d images, %d curves, %d maps in %.1f s", len(rows), len(table),
             len(table) // max(1, len(settings["orders"])), time.perf_counter() - started)
    return table[COLUMNS].reset_index(drop=True), long[CURVE_COLUMNS].reset_index(drop=True)
