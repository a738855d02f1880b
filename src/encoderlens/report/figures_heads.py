"""Head × building-part heatmap: which attention heads attend to which kind of expert box.

Input: the per-feature alignment tables (`alignment_features.parquet`, one row per image, feature,
method, layer, head, threshold). Per model, the first method with per-head maps (CLS attention, then
SigLIP's MAP probe) at one layer (the last stored layer, or the one whose head mean scores best),
at the reference threshold; a cell is the mean IoU of that head over the scorable images that have
a box of that building-part type.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .figures import COLORMAP, Plot, empty_panel, new_figure, require_columns, styled, text_colour_on

FEATURE_COLUMNS = ["image_id", "feature", "model", "variant", "method", "layer", "head", "threshold",
                   "iou", "scorable"]
HEAD_METHODS = ("cls", "map_probe")
TABLE_COLUMNS = ["model", "variant", "method", "layer", "head", "feature", "mean_iou", "n"]


def _layer_for(rows: pd.DataFrame, layer_rule: str) -> int:
    layered = rows[rows["layer"] >= 0]
    if layered.empty:
        return int(rows["layer"].iloc[0])
    if layer_rule == "last":
        return int(layered["layer"].max())
    head_mean = layered[layered["head"] == -1].groupby("layer")["iou"].mean()
    return int(head_mean.sort_index(ascending=False).idxmax())


def head_feature_table(features: pd.DataFrame, threshold: float, layer_rule: str = "last") -> pd.DataFrame:
    """Mean IoU per (model, head, feature) with the number of scorable images behind each cell."""
    require_columns(features, FEATURE_COLUMNS, "per-feature alignment table")
    table = features[np.isclose(features["threshold"].astype(float), threshold)
                     & features["scorable"].astype(bool)].copy()
    table["variant"] = table["variant"].fillna("").astype(str)
    parts = []
    for (model, variant), rows in table.groupby(["model", "variant"], sort=True):
        method = next((m for m in HEAD_METHODS if ((rows["method"] == m) & (rows["head"] >= 0)).any()), None)
        if method is None:
            continue
        rows = rows[rows["method"] == method]
        layer = _layer_for(rows, layer_rule)
        heads = rows[(rows["layer"] == layer) & (rows["head"] >= 0)]
        cells = (heads.groupby(["head", "feature"])["iou"].agg(mean_iou="mean", n="count").reset_index())
        parts.append(cells.assign(model=model, variant=variant, method=method, layer=layer))
    if not parts:
        return pd.DataFrame({column: [] for column in TABLE_COLUMNS})
    return pd.concat(parts, ignore_index=True)[TABLE_COLUMNS].sort_values(
        ["model", "variant", "head", "feature"]).reset_index(drop=True)


def head_feature_matrix(cells: pd.DataFrame) -> tuple[np.ndarray, list[int], list[str]]:
    """(heads × features matrix of mean IoU, head indices, feature names) of one model's cells."""
    pivot = cells.pivot(index="head", columns="feature", values="mean_iou").sort_index()
    return pivot.to_numpy(dtype=float), [int(h) for h in pivot.index], [str(f) for f in pivot.columns]


@styled
def plot_head_feature(features: pd.DataFrame, threshold: float, layer_rule: str = "last") -> Plot:
    """One heatmap per model: heads (rows) × building-part types (columns), shared colour scale."""
    cells = head_feature_table(features, threshold, layer_rule)
    groups = list(cells.groupby(["model", "variant"], sort=True))
    columns = min(3, max(1, len(groups)))
    n_rows = max(1, int(np.ceil(len(groups) / columns)))
    n_features = cells["feature"].nunique() if len(cells) else 1
    n_heads = cells["head"].nunique() if len(cells) else 1
    label_room = 0.055 * max((len(str(f)) for f in cells["feature"]), default=10)  # rotated names
    figure = new_figure(columns * (0.9 + 0.34 * n_features) + 0.8,
                        n_rows * (1.0 + 0.2 * n_heads + label_room))
    axes = np.atleast_1d(figure.subplots(n_rows, columns, squeeze=False)).ravel()
    for ax in axes[len(groups):]:
        ax.set_visible(False)
    if not groups:
        axes[0].set_visible(True)
        empty_panel(axes[0], "no per-head maps")
        return Plot(figure, cells, "Head × feature heatmap: no model stores per-head maps.")
    vmin, vmax = float(cells["mean_iou"].min()), float(cells["mean_iou"].max())
    if vmax <= vmin:
        vmax = vmin + 1e-6
    image = None
    for ax, ((model, variant), own) in zip(axes, groups):
        matrix, heads, names = head_feature_matrix(own)
        counts = own.groupby("feature")["n"].max()
        image = ax.imshow(matrix, cmap=COLORMAP, vmin=vmin, vmax=vmax, aspect="auto",
                          interpolation="nearest", gid=f"heatmap:{model}:{variant}")
        if matrix.size <= 400:
            for (row, column), value in np.ndenumerate(matrix):
                if np.isfinite(value):
                    ax.text(column, row, f"{value:.2f}", ha="center", va="center", fontsize=6,
                            color=text_colour_on(value, vmin, vmax))
        ax.set_xticks(range(len(names)), [f"{name} (n={counts[name]})" for name in names],
                      rotation=60, ha="right", rotation_mode="anchor")
        ax.set_yticks(range(len(heads)), [str(h) for h in heads])
        method, layer = own["method"].iloc[0], int(own["layer"].iloc[0])
        where = f"L{layer}" if layer >= 0 else "pooling head"
        suffix = f" [{variant}]" if variant not in ("", "frozen") else ""
        ax.set_title(f"{model}{suffix} · {method} {where}")
        ax.set_ylabel("head")
    figure.colorbar(image, ax=axes[:len(groups)].tolist(), label=f"mean IoU at {threshold:g}% mass",
                    shrink=0.8)
    caption = (f"Mean IoU of each attention head with the boxes of each building-part type, at the "
               f"{threshold:g}% mass threshold, per model at "
               f"{'its last stored layer' if layer_rule == 'last' else 'its best layer'} (CLS attention; "
               f"SigLIP: the MAP pooling head). n: scorable images with a box of that type. One colour "
               f"scale (cividis) across panels.")
    return Plot(figure, cells, caption)
