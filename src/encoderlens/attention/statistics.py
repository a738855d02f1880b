"""How concentrated CLS attention is: entropy, top-10% mass, patches above the mean, Gini.

Per image and layer, the CLS→patch attention is averaged over heads and renormalised over the
P = gh·gw patches, so p sums to 1 (attention.h5 stores the row raw: the share the CLS token gives to
itself and to register tokens is dropped here). All statistics are computed in float64, though the
stored maps are float16.

- `entropy`: −Σ p log p in nats, with 0 log 0 = 0.
- `entropy_norm`: entropy / log P; 1 for a uniform map, 0 for a one-hot map.
- `top10_mass`: mass of the k = ⌈P/10⌉ largest patches (computed in integers; P = 256 gives 26,
  P = 30 gives 3), so k/P for a uniform map, slightly above 0.1 when 10 does not divide P.
- `n_above_mean`: patches with p > 1/P (the mean). A p within a relative 1e-9 of 1/P counts as equal,
  so a flat map gives 0 whatever float rounding does to it.
- `gini`: the population Gini of the sorted masses p_(1) <= ... <= p_(P),
  G = 2 Σ_i i·p_(i) / (P Σ p) − (P + 1)/P, which equals Σ_i Σ_j |p_i − p_j| / (2 P Σ p).
  0 for a uniform map and (P − 1)/P for a one-hot map: there is no small-sample correction, so the
  maximum approaches 1 as P grows.

A map whose total mass is zero or non-finite, or that has a negative or non-finite entry, is no
distribution: its row has `scorable` False and NaN in every statistic (which is why `n_above_mean`, a
count, is a float column). `n_patches`, `grid_h` and `grid_w` are recorded for every row. A grid of
one patch has nothing to concentrate over (log P = 0) and is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import h5py
import numpy as np
import pandas as pd
from scipy.special import entr

from encoderlens.extract.h5 import read_ids

STATISTICS = ("entropy", "entropy_norm", "top10_mass", "n_above_mean", "gini")
COLUMNS = ("image_id", "layer", *STATISTICS, "n_patches", "grid_h", "grid_w", "scorable")
TOP_PERCENT = 10
MEAN_RTOL = 1e-9
NO_LAYER = -1  # the layer label of maps given without one, as in attention.methods


def attention_statistics(cls_maps: np.ndarray, image_ids: Sequence[str] | None = None,
                         layer: int = NO_LAYER) -> pd.DataFrame:
    """Statistics of one layer's maps: (N, H, gh, gw) per head, or (N, gh, gw) already head-averaged.

    `image_ids` defaults to the row positions as strings.
    """
    cls_maps = np.asarray(cls_maps)
    if cls_maps.ndim not in (3, 4):
        raise ValueError(f"expected (N, H, gh, gw) or (N, gh, gw) maps, got shape {cls_maps.shape}")
    # dtype=float64 accumulates in float64 without first copying the float16 block to float64
    maps = cls_maps.mean(axis=1, dtype=np.float64) if cls_maps.ndim == 4 else cls_maps.astype(np.float64)
    n, gh, gw = maps.shape
    ids = [str(i) for i in range(n)] if image_ids is None else list(image_ids)
    if len(ids) != n:
        raise ValueError(f"{len(ids)} image ids for {n} maps")
    return _frame(ids, np.full(n, layer), maps.reshape(n, gh * gw), (gh, gw))


def statistics_from_h5(attention_h5_path: str | Path, layers: str | int | Sequence[int] = "last",
                       batch_size: int = 256) -> pd.DataFrame:
    """Statistics of /cls in an attention.h5, one row per image and selected layer (image-major).

    `layers`: "last" (the last kept layer), "all" (every kept layer), or layer indices as stored in
    /layers (not positions along /cls). Images are read `batch_size` at a time, so memory stays flat.
    """
    with h5py.File(attention_h5_path, "r") as handle:
        if "cls" not in handle:
            raise KeyError(f"{attention_h5_path} has no /cls: the model has no CLS token to read")
        cls = handle["cls"]
        kept = np.asarray(handle["layers"][()], dtype=np.int64)
        if cls.ndim != 5 or cls.shape[1] != len(kept):
            raise ValueError(f"/cls has shape {cls.shape}, expected (N, {len(kept)}, H, gh, gw)")
        positions = _layer_positions(kept, layers)
        ids = read_ids(handle)
        n, _, _, gh, gw = cls.shape
        if len(ids) != n:
            raise ValueError(f"/ids has {len(ids)} entries, /cls {n} images")
        frames = []
        for start in range(0, n, batch_size):
            # a chunk holds one image's every layer, so read whole images and select layers after
            block = cls[start:start + batch_size][:, positions]       # (b, l, H, gh, gw) float16
            maps = block.mean(axis=2, dtype=np.float64).reshape(-1, gh * gw)
            batch_ids = np.repeat(ids[start:start + batch_size], len(positions))
            frames.append(_frame(batch_ids, np.tile(kept[positions], len(block)), maps, (gh, gw)))
    if not frames:
        return _frame([], np.empty(0, dtype=np.int64), np.empty((0, gh * gw)), (gh, gw))
    return pd.concat(frames, ignore_index=True)


def aggregate(stats: pd.DataFrame, by: str | Sequence[str] = "country",
              labels: pd.DataFrame | None = None) -> pd.DataFrame:
    """Mean and std (ddof 1) of every statistic per group, over scorable rows only.

    Grouping columns missing from `stats` are taken from `labels` (image_id plus label columns, one
    row per image; every image in `stats` must have one). Keys are grouped as they are, missing ones
    included: read label CSVs with keep_default_na=False so that "NA" stays Namibia. `count` is the
    number of scorable rows per group, `n_unscorable` the rest; std is NaN where count < 2.
    """
    by = [by] if isinstance(by, str) else list(by)
    frame = stats
    from_labels = [column for column in by if column not in stats.columns]
    if from_labels:
        if labels is None:
            raise ValueError(f"columns {from_labels} are not in the statistics and no labels were given")
        if labels["image_id"].duplicated().any():
            raise ValueError("labels have more than one row for some image_id")
        frame = stats.merge(labels[["image_id", *from_labels]], on="image_id", how="left",
                            indicator=True)
        unlabelled = int((frame.pop("_merge") != "both").sum())
        if unlabelled:
            raise ValueError(f"{unlabelled} statistics rows have no image_id in labels")
    grouped = frame.groupby(by, dropna=False, sort=True)
    # unscorable rows hold NaN everywhere, and mean/std skip NaN: they drop out on their own
    out = grouped[list(STATISTICS)].agg(["mean", "std"])
    out.columns = [f"{statistic}_{how}" for statistic, how in out.columns]
    out["count"] = grouped["scorable"].sum().astype(np.int64)
    out["n_unscorable"] = grouped.size() - out["count"]
    return out.reset_index()


def _frame(ids, layers: np.ndarray, maps: np.ndarray, grid: tuple[int, int]) -> pd.DataFrame:
    """The statistics table of head-averaged maps (M, P) float64, labelled by `ids` and `layers`."""
    gh, gw = grid
    n = len(maps)
    frame = pd.DataFrame({"image_id": pd.Series(ids, dtype=object).astype(str),
                          "layer": np.asarray(layers, dtype=np.int64)})
    scorable, values = _statistics(maps)
    for name in STATISTICS:
        frame[name] = values[name]
    frame["n_patches"] = np.full(n, gh * gw, dtype=np.int64)
    frame["grid_h"] = np.full(n, gh, dtype=np.int64)
    frame["grid_w"] = np.full(n, gw, dtype=np.int64)
    frame["scorable"] = scorable
    return frame[list(COLUMNS)]


def _statistics(maps: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(scorable (M,) bool, {statistic: (M,) float64}) of maps (M, P), as the module doc defines."""
    m, n_patches = maps.shape
    if n_patches < 2:
        raise ValueError(f"attention statistics need at least 2 patches, got {n_patches}")
    with np.errstate(invalid="ignore", over="ignore"):
        total = maps.sum(axis=1)
        # NaN fails >= 0, so a NaN entry is caught here too; +inf is caught by isfinite
        scorable = np.all(np.isfinite(maps) & (maps >= 0), axis=1) & np.isfinite(total) & (total > 0)
    values = {name: np.full(m, np.nan) for name in STATISTICS}
    if not scorable.any():
        return scorable, values
    p = maps[scorable] / total[scorable, None]
    ordered = np.sort(p, axis=1)
    mass = ordered.sum(axis=1)  # 1 up to rounding; kept in the Gini so that a flat map gives 0
    top = -(-n_patches * TOP_PERCENT // 100)  # ceil(P * 10 / 100) in integers
    ranks = np.arange(1, n_patches + 1, dtype=np.float64)
    entropy = entr(p).sum(axis=1)
    values["entropy"][scorable] = entropy
    values["entropy_norm"][scorable] = entropy / np.log(n_patches)
    values["top10_mass"][scorable] = ordered[:, -top:].sum(axis=1)
    values["n_above_mean"][scorable] = (p > (1 + MEAN_RTOL) / n_patches).sum(axis=1)
    # a row-wise sum, not a matmul: BLAS rounding would make the value depend on the batch size
    weighted = (ordered * ranks).sum(axis=1)
    values["gini"][scorable] = 2 * weighted / (n_patches * mass) - (n_patches + 1) / n_patches
    return scorable, values


def _layer_positions(kept: np.ndarray, layers) -> np.ndarray:
    """Positions along /cls of the requested layers ("last", "all", or layer indices in /layers)."""
    if isinstance(layers, str):
        if layers == "last":
            return np.array([len(kept) - 1])
        if layers == "all":
            return np.arange(len(kept))
        raise ValueError(f'layers must be "last", "all" or layer indices, got {layers!r}')
    wanted = np.atleast_1d(np.asarray(layers, dtype=np.int64))
    missing = sorted(set(wanted.tolist()) - set(kept.tolist()))
    if missing:
        raise ValueError(f"layers {missing} were not kept; /layers holds {kept.tolist()}")
    return np.array([int(np.flatnonzero(kept == layer)[0]) for layer in wanted])
