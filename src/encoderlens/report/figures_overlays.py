"""Attention overlays on exemplar images: the best, median and worst image of each model by IoU.

Per model one map is shown: the first method of a preference list the model has, at its last stored
layer (or the best layer), heads averaged, ranked by IoU at the reference threshold over the
scorable images (ties broken by image id, so the choice is reproducible). The median is the lower
middle image when the count is even.

The map is read from attention.h5 with the same readers the alignment scores use, upsampled
bilinearly to the displayed image. Images were resized to the model's square input without
cropping, so the grid covers the whole image and a box in [0, 1] image coordinates lands at
(left·W, top·H) of a W × H display. Both are drawn with extent (0, W, H, 0): pixel edges on integer
coordinates, boxes exactly where the annotation puts them. The dashed outline is the smallest
region holding the threshold's share of the displayed map's mass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import h5py
import numpy as np
import pandas as pd
from matplotlib import patheffects
from matplotlib.patches import Rectangle
from PIL import Image

from encoderlens.attention.methods import read_method
from encoderlens.alignment.resize import upsample
from encoderlens.alignment.thresholds import mass_threshold
from encoderlens.data.images import as_rgb

from .figures import Plot, empty_panel, new_figure, require_columns, styled

DEFAULT_METHOD_PREFERENCE = ("cls", "map_probe", "gradcam", "mean", "rollout")
RANKS = ("best", "median", "worst")
EXEMPLAR_COLUMNS = ["model", "variant", "method", "layer", "rank", "image_id", "iou", "n_scored"]
EXEMPLAR_INPUT_COLUMNS = ["image_id", "model", "variant", "method", "layer", "head", "threshold", "iou",
                          "scorable"]
OVERLAY_CMAP = "inferno"  # lightness rises monotonically: reads as "more attention" in grayscale too


def overlay_method(alignment: pd.DataFrame, preference: Sequence[str] = DEFAULT_METHOD_PREFERENCE,
                   layer_rule: str = "last", threshold: float | None = None) -> tuple[str, int]:
    """(method, layer) shown for one model: the first preferred method present, at its chosen layer."""
    methods = set(alignment["method"].astype(str))
    method = next((m for m in preference if m in methods), None)
    if method is None:
        raise ValueError(f"alignment table has none of the methods {list(preference)}: it has {sorted(methods)}")
    rows = alignment[(alignment["method"] == method) & (alignment["head"] == -1)]
    layered = rows[rows["layer"] >= 0]
    if layered.empty:
        return method, int(rows["layer"].iloc[0])
    if layer_rule == "last":
        return method, int(layered["layer"].max())
    at = layered[np.isclose(layered["threshold"], threshold) & layered["scorable"]]
    means = at.groupby("layer")["iou"].mean().sort_index(ascending=False)
    return method, int(means.idxmax())


def exemplars(alignment: pd.DataFrame, method: str, layer: int, threshold: float) -> pd.DataFrame:
    """The best, median and worst scorable image by IoU of one map (head mean) at the threshold."""
    require_columns(alignment, EXEMPLAR_INPUT_COLUMNS, "alignment table")
    rows = alignment[(alignment["method"] == method) & (alignment["layer"] == layer)
                     & (alignment["head"] == -1) & np.isclose(alignment["threshold"], threshold)
                     & alignment["scorable"].astype(bool)]
    rows = rows.assign(image_id=rows["image_id"].astype(str)).sort_values(["iou", "image_id"])
    if rows.empty:
        return pd.DataFrame({column: [] for column in EXEMPLAR_COLUMNS})
    n = len(rows)
    positions = {"best": n - 1, "median": (n - 1) // 2, "worst": 0}
    picked = []
    for rank in RANKS:
        row = rows.iloc[positions[rank]]
        picked.append({"model": str(row["model"]), "variant": "" if pd.isna(row["variant"]) else str(row["variant"]),
                       "method": method, "layer": int(layer), "rank": rank,
                       "image_id": row["image_id"], "iou": float(row["iou"]), "n_scored": n})
    return pd.DataFrame(picked, columns=EXEMPLAR_COLUMNS)


def attention_grid(store: Mapping, image_id: str, method: str, layer: int) -> np.ndarray:
    """The (gh, gw) map of one image, method and layer, heads averaged, as the alignment scores read it."""
    ids = [i.decode() if isinstance(i, bytes) else str(i) for i in store["ids"][()]]
    try:
        row = ids.index(image_id)
    except ValueError:
        raise ValueError(f"image {image_id!r} is not in the attention file") from None
    read = read_method(method, store, row)
    heads = np.array([str(h) for h in read.head])
    chosen = np.flatnonzero((read.layer == layer) & np.isin(heads, ["mean", ""]))
    if len(chosen) != 1:
        raise ValueError(f"attention file has no single {method} map at layer {layer} (heads averaged)")
    return read.maps[0, chosen[0]].astype(np.float64)


def display_image(path, max_side: int = 384) -> np.ndarray:
    """RGB pixels of the image, shrunk so its longer side is at most `max_side`, aspect kept."""
    with Image.open(path) as image:
        image = as_rgb(image)
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        return np.asarray(image)


def box_rectangles(boxes: pd.DataFrame, width: int, height: int) -> list[tuple[float, float, float, float]]:
    """(x, y, w, h) in display pixels of boxes given in [0, 1] image coordinates."""
    return [(row.left * width, row.top * height, row.width * width, row.height * height)
            for row in boxes.itertuples()]


def _draw_panel(ax, pixels: np.ndarray, grid: np.ndarray, boxes: pd.DataFrame, threshold: float) -> None:
    height, width = pixels.shape[:2]
    extent = (0, width, height, 0)
    shown = upsample(grid[None], (height, width))[0].astype(np.float64)
    ax.imshow(pixels, extent=extent, interpolation="bilinear")
    span = shown.max() - shown.min()
    normalised = (shown - shown.min()) / span if span > 0 else np.zeros_like(shown)
    ax.imshow(normalised, extent=extent, cmap=OVERLAY_CMAP, alpha=0.5, vmin=0, vmax=1,
              interpolation="nearest", gid="attention")
    if np.isfinite(shown).all() and (shown >= 0).all() and shown.sum() > 0:
        region = mass_threshold(shown, threshold)
        centres_x, centres_y = np.arange(width) + 0.5, np.arange(height) + 0.5
        if region.min() < 0.5 < region.max():  # a region covering all or nothing has no outline
            ax.contour(centres_x, centres_y, region, levels=[0.5], colors="white", linewidths=1.0,
                       linestyles="--")
    outline = [patheffects.withStroke(linewidth=2.4, foreground="black")]
    for x, y, w, h in box_rectangles(boxes, width, height):
        box = Rectangle((x, y), w, h, fill=False, edgecolor="white", linewidth=1.3, gid="expert_box")
        box.set_path_effects(outline)
        ax.add_patch(box)
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.set_xticks([])
    ax.set_yticks([])


@styled
def plot_attention_overlays(exemplar_table: pd.DataFrame, attention_paths: Mapping[str, str],
                            manifest: pd.DataFrame, annotations: pd.DataFrame, threshold: float,
                            root=".", max_side: int = 384) -> Plot:
    """Rows: models; columns: best, median, worst image. Boxes white with a black edge."""
    models = list(dict.fromkeys(exemplar_table["model"]))
    paths = dict(zip(manifest["image_id"].astype(str), manifest["path"].astype(str)))
    boxes_of = {key: rows for key, rows in annotations.assign(
        image_id=annotations["image_id"].astype(str)).groupby("image_id")}
    figure = new_figure(7.2, 2.3 * max(1, len(models)) + 0.3)
    axes = figure.subplots(max(1, len(models)), len(RANKS), squeeze=False)
    if not models:
        for ax in axes.ravel():
            ax.set_visible(False)
        axes[0, 0].set_visible(True)
        empty_panel(axes[0, 0], "no scorable maps")
        return Plot(figure, exemplar_table, "Attention overlays: no scorable maps.")
    for row_axes, model in zip(axes, models):
        own = exemplar_table[exemplar_table["model"] == model].set_index("rank")
        with h5py.File(attention_paths[model], "r") as store:
            for ax, rank in zip(row_axes, RANKS):
                if rank not in own.index:
                    empty_panel(ax, "—")
                    continue
                entry = own.loc[rank]
                image_id = entry["image_id"]
                if image_id not in paths:
                    raise ValueError(f"image {image_id!r} of the alignment table is not in the manifest")
                grid = attention_grid(store, image_id, entry["method"], int(entry["layer"]))
                pixels = display_image(Path(root) / paths[image_id], max_side)
                _draw_panel(ax, pixels, grid, boxes_of.get(image_id, annotations.iloc[:0]), threshold)
                where = f" L{int(entry['layer'])}" if int(entry["layer"]) >= 0 else ""
                ax.set_title(f"{rank}: IoU {entry['iou']:.2f}\n{image_id}", fontsize=7)
                if rank == RANKS[0]:
                    ax.set_ylabel(f"{model}\n{entry['method']}{where}", fontsize=8)
    caption = (f"Attention (inferno, min–max scaled per image) over the best, median and worst image by "
               f"IoU at the {threshold:g}% mass threshold, per model (heads averaged). White boxes: the "
               f"experts' boxes; dashed outline: the smallest region holding {threshold:g}% of the "
               f"attention mass.")
    return Plot(figure, exemplar_table, caption)
