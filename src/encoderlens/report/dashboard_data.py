"""The dashboard's data: per-image attention maps with their scores, and the overview tables.

Per image, one entry per (model, variant, method) holds every map the alignment study scored for that
image (layer x head slots, quantised, see `dashboard_encode`) and the scores of each slot read from
`alignment.parquet`: the IoU at every threshold, the coverage and the pointing hit. The mean over
heads of a layer is not stored: it is exactly the mean of that layer's head maps (as
`attention.methods.ClsAttention.read` computes it), so the page recomputes it from the dequantised heads,
which keeps the six-model preset's images under 1 MB each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import h5py
import numpy as np
import pandas as pd

from ..attention.methods import read_method
from .dashboard_encode import MISSING, b85, columns, quantise_maps, score_codes

METRICS = ("iou", "coverage", "pointing_hit")
ALIGNMENT_KEYS = ["method", "layer", "head", "threshold"]


def _ids(store: h5py.File) -> list[str]:
    return [i.decode() if isinstance(i, bytes) else str(i) for i in store["ids"][()]]


def _head_code(label: str) -> int:
    return int(label) if str(label).isdigit() else -1


def _derived_means(layers: np.ndarray, heads: np.ndarray) -> np.ndarray:
    """True for slots that are the mean of the numbered head slots of the same layer."""
    numbered = {int(l) for l, h in zip(layers, heads) if str(h).isdigit()}
    return np.array([h == "mean" and int(l) in numbered for l, h in zip(layers, heads)], dtype=bool)


def slot_labels(layers: Sequence[int], heads: Sequence[int]) -> np.ndarray:
    """(layer, head) of every slot as interleaved int8 (the page rebuilds which slots are head means:
    head -1 in a layer that has numbered heads)."""
    labels = np.stack([np.asarray(layers, dtype=np.int64), np.asarray(heads, dtype=np.int64)], axis=1)
    if labels.size and (labels.min() < -1 or labels.max() > 127):
        raise ValueError(f"layer and head indices must lie in [-1, 127] for the dashboard, got "
                         f"{labels.min()} .. {labels.max()}")
    return labels.astype(np.int8).ravel()


def slot_scores(rows: pd.DataFrame, layers: Sequence[int], heads: Sequence[int],
                thresholds: Sequence[float]) -> np.ndarray:
    """(V, K + 2) uint16 score codes of the slots (layer, head) of one image and method:
    the IoU at each threshold, then coverage and pointing hit. A slot without a row is MISSING."""
    n_thresholds = len(thresholds)
    codes = np.full((len(layers), n_thresholds + 2), MISSING, dtype=np.uint16)
    if rows.empty:
        return codes
    slot_of = {(int(l), int(h)): i for i, (l, h) in enumerate(zip(layers, heads))}
    column_of = {float(t): k for k, t in enumerate(thresholds)}
    slot = np.array([slot_of.get((int(l), int(h)), -1) for l, h in zip(rows["layer"], rows["head"])])
    column = np.array([column_of.get(float(t), -1) for t in rows["threshold"]])
    keep = (slot >= 0) & (column >= 0)
    iou = score_codes(rows["iou"].to_numpy()[keep])
    codes[slot[keep], column[keep]] = iou
    # coverage and the pointing game do not depend on the threshold: one row per slot is enough
    first = pd.Series(np.flatnonzero(slot >= 0)).groupby(slot[slot >= 0]).first()
    codes[first.index, n_thresholds] = score_codes(rows["coverage"].to_numpy()[first.to_numpy()])
    codes[first.index, n_thresholds + 1] = score_codes(rows["pointing_hit"].to_numpy()[first.to_numpy()])
    return codes


def attention_entries(attention_path: str | Path, alignment: pd.DataFrame, model: str, variant: str,
                      image_ids: Iterable[str], thresholds: Sequence[float],
                      analysis_size: int | None) -> dict[str, list[dict]]:
    """{image_id: [entry per method]} for the images of one attention file that the table scored.

    Methods are the ones present in `alignment` (the study may score a subset of the stored ones).
    """
    wanted = set(image_ids)
    scored = alignment[alignment["image_id"].isin(wanted)]
    methods = list(dict.fromkeys(scored["method"]))
    by_image_method = {key: rows for key, rows in scored.groupby(["image_id", "method"], sort=False)}
    entries: dict[str, list[dict]] = {}
    with h5py.File(attention_path, "r") as store:
        ids = _ids(store)
        size = int(analysis_size or store.attrs["image_size"])
        rows = [(row, image_id) for row, image_id in enumerate(ids) if image_id in wanted]
        for method in methods:
            if method not in store:
                raise ValueError(f"{attention_path}: alignment.parquet scores method {method!r}, "
                                 f"which the attention file does not hold")
            for row, image_id in rows:
                read = read_method(method, store, row)
                derived = _derived_means(read.layer, read.head)
                head_codes = [_head_code(h) for h in read.head]
                codes, ranges = quantise_maps(read.maps[0][~derived])
                image_rows = by_image_method.get((image_id, method), scored.iloc[:0])
                scores = slot_scores(image_rows, read.layer, head_codes, thresholds)
                grid_h, grid_w = read.maps.shape[-2:]
                entries.setdefault(image_id, []).append({
                    "model": model, "variant": variant, "method": method,
                    "grid": [int(grid_h), int(grid_w)], "size": size,
                    "n": len(head_codes), "slots": b85(slot_labels(read.layer, head_codes)),
                    "maps": b85(codes), "ranges": b85(ranges.astype("<f4")),
                    "scores": b85(scores.astype("<u2")),
                })
    return entries


def baseline_scores(baselines: pd.DataFrame, image_id: str, thresholds: Sequence[float]) -> list[dict]:
    """The baselines' score codes for one image: [{method, scores: [K IoU, coverage, pointing]}]."""
    out = []
    for method, rows in baselines[baselines["image_id"] == image_id].groupby("method", sort=False):
        codes = slot_scores(rows, [-1], [-1], thresholds)[0]
        out.append({"method": str(method), "scores": [int(c) for c in codes]})
    return out


def annotated_images(manifest: pd.DataFrame, annotations: pd.DataFrame) -> pd.DataFrame:
    """Images with at least one expert box, in manifest order: image_id, path and their boxes."""
    boxed = set(annotations["image_id"].astype(str))
    images = manifest[manifest["image_id"].astype(str).isin(boxed)][["image_id", "path"]].copy()
    images["image_id"] = images["image_id"].astype(str)
    return images.reset_index(drop=True)


def image_boxes(annotations: pd.DataFrame, image_id: str, features: list[str]) -> list[list]:
    """[[feature index, left, top, width, height], ...] in [0, 1] of the full image."""
    rows = annotations[annotations["image_id"].astype(str) == image_id]
    return [[features.index(r.feature), round(float(r.left), 6), round(float(r.top), 6),
             round(float(r.width), 6), round(float(r.height), 6)] for r in rows.itertuples()]


def computed_summary(alignment: pd.DataFrame) -> pd.DataFrame:
    """Means over images in the statistics contract's columns (no confidence interval: NaN), used
    when the statistics stage has not produced `alignment_summary.parquet`."""
    keys = ["model", "variant", "method", "layer", "head", "threshold"]
    long = alignment.melt(id_vars=keys, value_vars=list(METRICS), var_name="metric")
    grouped = long.groupby(keys + ["metric"], sort=False)["value"]
    summary = grouped.agg(n="count", size="size", mean="mean").reset_index()
    summary["n_dropped"] = summary.pop("size") - summary["n"]
    summary["ci_low"] = np.nan
    summary["ci_high"] = np.nan
    return summary[keys + ["metric", "n", "n_dropped", "mean", "ci_low", "ci_high"]]


def leaderboard_table(summary: pd.DataFrame) -> dict:
    """The rows of the summary the leaderboard ranks: whole-map rows (head -1: head mean or a map
    without heads), every layer, threshold and metric."""
    keep = ["model", "variant", "method", "layer", "threshold", "metric", "n", "n_dropped", "mean",
            "ci_low", "ci_high"]
    missing = [column for column in keep + ["head"] if column not in summary.columns]
    if missing:
        raise ValueError(f"alignment summary lacks the columns {missing} (contract: model, variant, "
                         f"method, layer, head, threshold, metric, n, n_dropped, mean, ci_low, ci_high)")
    rows = summary[summary["head"] == -1]
    return columns(rows[keep].reset_index(drop=True), decimals=6)


def feature_table(features: pd.DataFrame) -> dict:
    """Mean scores per (variant, method, layer, head, threshold, feature) over the images that have
    that feature, with n = scorable images, for the per-feature and head x feature views."""
    keys = ["variant", "method", "layer", "head", "threshold", "feature"]
    grouped = features.groupby(keys, sort=False)
    table = grouped[list(METRICS)].mean()
    table["n"] = grouped["iou"].count()
    return columns(table.reset_index(), decimals=5)


def table_payload(frame: pd.DataFrame, **labels) -> dict:
    """A small result table (geo, captions) as columns, with labels (e.g. model) as constant columns."""
    frame = frame.copy()
    for position, (name, value) in enumerate(labels.items()):
        frame.insert(position, name, value)
    for name in frame.columns:
        if frame[name].dtype == bool:
            frame[name] = frame[name].astype(int)
    return columns(frame.reset_index(drop=True), decimals=6)


def gallery_scores(alignment: pd.DataFrame, image_ids: Sequence[str], threshold: float) -> dict:
    """Per image, the IoU at `threshold` of every model x variant x method, whole map (head -1) at
    its last scored layer: what the gallery sorts by. {"keys": [label], "values": [[IoU | None]]}."""
    rows = alignment[(alignment["head"] == -1) & (alignment["threshold"] == float(threshold))]
    keys, columns = [], []
    for (model, variant, method), own in rows.groupby(["model", "variant", "method"], sort=False):
        last = own[own["layer"] == own["layer"].max()].drop_duplicates("image_id").set_index("image_id")["iou"]
        keys.append(f"{model} · {variant} · {method}")
        columns.append(last.reindex(list(image_ids)).to_numpy(dtype=float))
    values = [[None if np.isnan(column[i]) else round(float(column[i]), 4) for column in columns]
              for i in range(len(image_ids))]
    return {"keys": keys, "values": values}
