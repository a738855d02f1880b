"""Plausibility against faithfulness: one panel per model (and variant), one point per map method
(its head-mean map at its last stored layer, as `faithfulness.stats.representative_maps` picks), x the
mean IoU with the expert boxes at the reference threshold, y the mean deletion AUC (lower: more
faithful), both with their bootstrap CIs over the same images (plausibility_faithfulness.parquet)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from encoderlens.faithfulness.stats import PLAUSIBILITY_COLUMNS, representative_maps

from .figures import MARKERS, Plot, empty_panel, new_figure, require_columns, series_colours

DRAWN = ["model", "variant", "method", "layer", "head", "threshold", "n", "iou_mean", "iou_ci_low", "iou_ci_high",
         "deletion_mean", "deletion_ci_low", "deletion_ci_high", "rho_images", "rho_maps", "n_maps", "small_n"]


def plausibility_points(table: pd.DataFrame) -> pd.DataFrame:
    """The drawn rows: per model and variant, each method's representative map with a defined mean."""
    require_columns(table, PLAUSIBILITY_COLUMNS, "plausibility_faithfulness.parquet")
    parts = [representative_maps(frame) for _, frame in table.groupby(["model", "variant"], sort=False)]
    points = pd.concat(parts, ignore_index=True) if parts else table.iloc[:0]
    points = points[np.isfinite(points["iou_mean"]) & np.isfinite(points["deletion_mean"])]
    return points[DRAWN].reset_index(drop=True)


def plot_plausibility_faithfulness(table: pd.DataFrame) -> Plot:
    points = plausibility_points(table)
    panels = list(dict.fromkeys(zip(points["model"], points["variant"])))
    columns = max(1, min(3, len(panels)))
    rows = max(1, -(-len(panels) // columns))
    figure = new_figure(3.0 * columns + 1.4, 2.8 * rows)
    axes = np.atleast_1d(figure.subplots(rows, columns, squeeze=False)).ravel()
    if not panels:
        empty_panel(axes[0], "no map scored for both plausibility and faithfulness")
        return Plot(figure, points, "Plausibility vs faithfulness: no map scored for both.")
    methods = list(dict.fromkeys(points["method"]))
    colours = series_colours(len(methods))
    for ax, (model, variant) in zip(axes, panels):
        mine = points[(points["model"] == model) & (points["variant"] == variant)]
        for _, row in mine.iterrows():
            k = methods.index(row["method"])
            ax.errorbar(row["iou_mean"], row["deletion_mean"],
                        xerr=[[row["iou_mean"] - row["iou_ci_low"]], [row["iou_ci_high"] - row["iou_mean"]]],
                        yerr=[[row["deletion_mean"] - row["deletion_ci_low"]],
                              [row["deletion_ci_high"] - row["deletion_mean"]]],
                        fmt=MARKERS[k % len(MARKERS)], color=colours[k], markeredgecolor="black",
                        markersize=6, capsize=2, elinewidth=0.8, label=row["method"],
                        gid=f"point:{model}:{variant}:{row['method']}")
        rho = mine["rho_maps"].iloc[0] if len(mine) else np.nan
        ax.set_title(f"{model} ({variant})" + (f", ρ over maps {rho:.2f}" if np.isfinite(rho) else ""))
        ax.set_xlabel(f"IoU at {mine['threshold'].iloc[0]:g}% mass (plausibility)")
        ax.set_ylabel("deletion AUC (lower: more faithful)")
        ax.grid(color="0.9", linewidth=0.6)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    handles = {}
    for ax in axes[:len(panels)]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    figure.legend(list(handles.values()), list(handles), frameon=False, title="method", loc="outside right upper")
    small = int(points["small_n"].sum())
    caption = (f"Plausibility against faithfulness of the same maps on the same images: mean IoU with the "
               f"expert boxes (x) and mean deletion AUC (y; the explained scalar's area under the deletion "
               f"curve, lower is more faithful), each with a 95% percentile bootstrap CI over images. One "
               f"point per method: its head-mean map at its last stored layer. {len(points)} points in "
               f"{len(panels)} panels" + (f"; {small} rest on fewer images than stats.min_n." if small else "."))
    return Plot(figure, points, caption)
