"""How fine-tuning moved attention: per-image IoU of tuned minus frozen, and the retention ratio.

Rows pair the same image, method, layer, head and threshold in the frozen and the tuned alignment
tables (`alignment.parquet` of each variant). A pair is kept only when both maps were scorable; the
others are counted, never scored as zero. `retention` = iou_tuned / iou_frozen per image (NaN where
the frozen IoU is 0); `retention_summary` gives the ratio of means, the robust per-model figure.
No torch here: an analysis job.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

KEYS = ["image_id", "method", "layer", "head", "threshold"]
DELTA_COLUMNS = ["image_id", "model", "variant", "method", "layer", "head", "threshold", "iou_frozen",
                 "iou_tuned", "delta_iou", "retention"]
SUMMARY_COLUMNS = ["model", "variant", "method", "layer", "head", "threshold", "n",
                   "mean_iou_frozen", "mean_iou_tuned", "mean_delta_iou", "retention"]


def _check(table: pd.DataFrame, name: str) -> None:
    missing = [c for c in KEYS + ["model", "variant", "iou", "scorable"] if c not in table.columns]
    if missing:
        raise ValueError(f"{name}: alignment table lacks columns {missing}")
    duplicated = table.duplicated(KEYS)
    if duplicated.any():
        raise ValueError(f"{name}: {int(duplicated.sum())} duplicate rows for ({', '.join(KEYS)})")


def delta_iou(frozen: pd.DataFrame, tuned: pd.DataFrame, frozen_name: str = "frozen",
              tuned_name: str = "tuned") -> tuple[pd.DataFrame, int]:
    """(per-image ΔIoU rows, number of tuned rows dropped as unpaired or unscorable)."""
    _check(frozen, frozen_name)
    _check(tuned, tuned_name)
    variants = tuned["variant"].unique()
    if len(variants) != 1 or variants[0] == "frozen":
        raise ValueError(f"{tuned_name}: expected one tuned variant, found {list(variants)}")
    if frozen["variant"].unique().tolist() != ["frozen"]:
        raise ValueError(f"{frozen_name}: expected variant frozen, found {frozen['variant'].unique().tolist()}")
    left = frozen[KEYS + ["iou", "scorable"]].rename(columns={"iou": "iou_frozen", "scorable": "ok_frozen"})
    right = tuned[KEYS + ["model", "variant", "iou", "scorable"]].rename(
        columns={"iou": "iou_tuned", "scorable": "ok_tuned"})
    paired = right.merge(left, on=KEYS, how="left", validate="one_to_one")
    keep = paired["ok_tuned"].astype(bool) & paired["ok_frozen"].fillna(False).astype(bool)
    paired = paired[keep].copy()
    paired["delta_iou"] = paired["iou_tuned"] - paired["iou_frozen"]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = paired["iou_tuned"] / paired["iou_frozen"]
    paired["retention"] = ratio.where(paired["iou_frozen"] > 0)
    paired = paired.sort_values(["variant", "method", "layer", "head", "threshold", "image_id"])
    return paired[DELTA_COLUMNS].reset_index(drop=True), int((~keep).sum())


def retention_summary(delta: pd.DataFrame) -> pd.DataFrame:
    """Per model, variant, method, layer, head and threshold: means and mean(tuned) / mean(frozen)."""
    groups = delta.groupby(["model", "variant", "method", "layer", "head", "threshold"], sort=True)
    summary = groups.agg(n=("delta_iou", "size"), mean_iou_frozen=("iou_frozen", "mean"),
                         mean_iou_tuned=("iou_tuned", "mean"), mean_delta_iou=("delta_iou", "mean")).reset_index()
    summary["retention"] = (summary["mean_iou_tuned"] / summary["mean_iou_frozen"]).where(
        summary["mean_iou_frozen"] > 0)
    return summary[SUMMARY_COLUMNS]
