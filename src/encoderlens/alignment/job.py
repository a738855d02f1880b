"""The alignment study's tables: every attention map of an attention.h5 file, and every baseline,
scored against the expert boxes of the same images.

Long format, one row per (image, method, layer, head, threshold): `image_id, model, variant, method,
layer, head, threshold, iou, coverage, pointing_hit, scorable`. `head` is -1 for the mean over heads
and for maps that have no heads (rollout, Grad-CAM); `layer` is -1 where a method is not per layer.
Coverage and the pointing game do not depend on the threshold and repeat across its rows. A map that
cannot be scored (NaN, negative or all-zero) keeps its rows with `scorable` False and NaN scores.
The per-feature table has the same columns plus `feature`, each image scored against the boxes of
one building-part type at a time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import h5py
import numpy as np
import pandas as pd
from PIL import Image

from encoderlens.data.images import as_rgb

from .baselines import baseline_maps, image_seed
from .masks import box_masks
from ..attention.methods import available_methods, read_method
from .scores import Scores, score_grid_maps, score_maps

COLUMNS = ["image_id", "model", "variant", "method", "layer", "head", "threshold", "iou", "coverage",
           "pointing_hit", "scorable"]
FEATURE_COLUMNS = COLUMNS[:1] + ["feature"] + COLUMNS[1:]
BATCH_IMAGES = 64  # images whose maps are scored in one kernel call (memory: their maps on the grid)


def _head_index(label: str) -> int:
    return int(label) if label.isdigit() else -1


def _long_rows(scores: Scores, labels: dict, layer: np.ndarray, head: np.ndarray) -> pd.DataFrame:
    """Scores of P maps x K thresholds as P*K long rows; a label is one value or one per map."""
    n_maps, n_thresholds = scores.iou.shape
    repeat = lambda values: np.repeat(values, n_thresholds)  # noqa: E731
    return pd.DataFrame({
        **{key: repeat(value) if isinstance(value, np.ndarray) else value for key, value in labels.items()},
        "layer": repeat(layer.astype(int)),
        "head": repeat(np.array([_head_index(str(h)) for h in head], dtype=int)),
        "threshold": np.tile(scores.thresholds.astype(float), n_maps),
        "iou": scores.iou.ravel(),
        "coverage": repeat(scores.coverage),
        "pointing_hit": repeat(scores.pointing_hit),
        "scorable": repeat(scores.scorable),
    })


def _frame(parts: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    if not parts:
        return pd.DataFrame({column: pd.Series(dtype=object) for column in columns})
    return pd.concat(parts, ignore_index=True)[columns]


def _image_masks(annotations: pd.DataFrame, size: int):
    """{(image_id,): union of its boxes} and {image_id: [(feature, that feature's mask), ...]}."""
    masks = box_masks(annotations, size)
    features_of = {key[0]: [] for key in masks}
    for (image_id, feature), mask in box_masks(annotations, size, by=("image_id", "feature")).items():
        features_of[image_id].append((feature, mask))
    return masks, features_of


def score_attention_file(attention_path: str | Path, annotations: pd.DataFrame, model: str, variant: str,
                         thresholds: Sequence[float], tolerance: float,
                         analysis_size: int | None = None,
                         methods: Sequence[str] | None = None, threads: int | None = None,
                         batch_images: int = BATCH_IMAGES) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(alignment, per-feature alignment) of every stored map of the annotated images in the file.

    Images are read `batch_images` at a time; all their maps are scored in one kernel call against
    each image's union of boxes and against each of its building parts' boxes, upsampled to the
    analysis resolution on the fly (`score_grid_maps`), on `threads` threads.
    """
    parts, feature_parts = [], []
    with h5py.File(attention_path, "r") as store:
        ids = [i.decode() if isinstance(i, bytes) else i for i in store["ids"][()]]
        size = int(analysis_size or store.attrs["image_size"])
        masks, features_of = _image_masks(annotations, size)
        annotated = [(row, image_id) for row, image_id in enumerate(ids) if (image_id,) in masks]
        chosen = available_methods(store) if methods is None else [m for m in methods if m in store]
        for method in chosen:
            for first in range(0, len(annotated), batch_images):
                batch = annotated[first:first + batch_images]
                rows = np.array([row for row, _ in batch])
                read = read_method(method, store, slice(rows[0], rows[-1] + 1))  # one contiguous read
                maps = read.maps[rows - rows[0]]
                n_images, n_variants = maps.shape[:2]
                grids = maps.reshape(n_images * n_variants, *maps.shape[2:])
                # pairs: every map with its image's boxes, then with each of its building parts' boxes
                pair_masks, map_of_pair, mask_of_pair, image_of_pair, feature_of_pair = [], [], [], [], []
                for i, (_, image_id) in enumerate(batch):
                    for feature, mask in [("", masks[(image_id,)])] + features_of[image_id]:
                        mask_of_pair.append(np.full(n_variants, len(pair_masks)))
                        pair_masks.append(mask)
                        map_of_pair.append(i * n_variants + np.arange(n_variants))
                        image_of_pair.append(np.full(n_variants, i))
                        feature_of_pair += [feature] * n_variants
                scores = score_grid_maps(grids, np.stack(pair_masks), np.concatenate(map_of_pair),
                                         np.concatenate(mask_of_pair), thresholds, tolerance, threads)
                image_of_pair = np.concatenate(image_of_pair)
                variant_of_pair = np.concatenate(map_of_pair) % n_variants
                frame = _long_rows(scores, {
                    "image_id": np.array([image_id for _, image_id in batch], dtype=object)[image_of_pair],
                    "feature": np.array(feature_of_pair, dtype=object), "model": model,
                    "variant": variant, "method": method}, read.layer[variant_of_pair],
                    read.head[variant_of_pair])
                whole = frame["feature"] == ""
                parts.append(frame[whole])
                feature_parts.append(frame[~whole])
    return _frame(parts, COLUMNS), _frame(feature_parts, FEATURE_COLUMNS)


def score_baselines(manifest: pd.DataFrame, annotations: pd.DataFrame, baselines: Sequence[str],
                    size: int, thresholds: Sequence[float], tolerance: float, draws: int,
                    seed: int, threads: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The baselines' tables, in the same format (model "baseline", method = the baseline's name).

    A baseline with R draws is scored per draw and the scores averaged, so its rows are expectations.
    """
    masks, features_of = _image_masks(annotations, size)
    paths = dict(zip(manifest["image_id"].astype(str), manifest["path"]))
    parts, feature_parts = [], []
    none = np.array([-1])
    for (image_id,), mask in masks.items():
        with Image.open(paths[image_id]) as image:
            pixels = np.asarray(as_rgb(image))
        for name in baselines:
            maps = baseline_maps(name, pixels, size, seed=image_seed(seed, image_id), draws=draws)
            labels = {"image_id": image_id, "model": "baseline", "variant": "", "method": name}
            parts.append(_long_rows(score_maps(maps, mask, thresholds, tolerance, threads).average(),
                                    labels, none, np.array([""])))
            for feature, feature_mask in features_of[image_id]:
                scores = score_maps(maps, feature_mask, thresholds, tolerance, threads).average()
                feature_parts.append(_long_rows(scores, {**labels, "feature": feature},
                                                none, np.array([""])))
    return _frame(parts, COLUMNS), _frame(feature_parts, FEATURE_COLUMNS)
