"""Fine-tuning figure: how the alignment with expert boxes moves when a model is fine-tuned.

Input: the fine-tuning stage's `delta_iou.parquet` per model (`image_id, model, variant, method,
layer, head, threshold, iou_frozen, iou_tuned, delta_iou, retention`). Per model the first method
of the preference list it has, at its last stored layer, heads averaged, at the reference
threshold; per strategy a box of the per-image ΔIoU (tuned − frozen) with its mean and a t-based
95% CI of the mean (paired over the same images; the statistics stage tests it formally).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.patches import Patch
from scipy import stats

from .figures import HATCHES, Plot, empty_panel, new_figure, require_columns, series_colours, styled
from .figures_overlays import DEFAULT_METHOD_PREFERENCE

STRATEGY_ORDER = ("linear", "lora", "full")
FLAT_TOLERANCE = 1e-9  # a spread of ΔIoU below this draws no box


def delta_table(deltas: pd.DataFrame, threshold: float,
                preference: Sequence[str] = DEFAULT_METHOD_PREFERENCE) -> pd.DataFrame:
    """Per model and strategy: n, mean, t 95% CI, median and quartiles of ΔIoU."""
    require_columns(deltas, ["image_id", "model", "variant", "method", "layer", "head", "threshold",
                             "delta_iou"], "ΔIoU table")
    rows = []
    at = deltas[np.isclose(deltas["threshold"].astype(float), threshold) & (deltas["head"] == -1)]
    for model, own in at.groupby("model", sort=True):
        method = next((m for m in preference if (own["method"] == m).any()), None)
        if method is None:
            continue
        own = own[own["method"] == method]
        layered = own[own["layer"] >= 0]
        layer = int(layered["layer"].max()) if len(layered) else int(own["layer"].iloc[0])
        own = own[own["layer"] == layer]
        for variant, group in own.groupby("variant", sort=False):
            values = group["delta_iou"].to_numpy(dtype=float)
            values = values[np.isfinite(values)]
            n = len(values)
            mean = float(values.mean()) if n else float("nan")
            if n >= 2 and values.std(ddof=1) > 0:
                low, high = stats.t.interval(0.95, n - 1, loc=mean, scale=stats.sem(values))
            else:
                low = high = mean
            rows.append({"model": model, "variant": variant, "method": method, "layer": layer, "n": n,
                         "mean": mean, "ci_low": float(low), "ci_high": float(high),
                         "median": float(np.median(values)) if n else float("nan"),
                         "q25": float(np.quantile(values, 0.25)) if n else float("nan"),
                         "q75": float(np.quantile(values, 0.75)) if n else float("nan"),
                         "_values": values})
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    rank = {s: i for i, s in enumerate(STRATEGY_ORDER)}
    table["_order"] = table["variant"].map(rank).fillna(len(rank))
    return table.sort_values(["model", "_order", "variant"]).drop(columns="_order").reset_index(drop=True)


@styled
def plot_delta_iou(deltas: pd.DataFrame, threshold: float,
                   preference: Sequence[str] = DEFAULT_METHOD_PREFERENCE) -> Plot:
    """Boxes of per-image ΔIoU per model (groups) and strategy (hatch), mean ± 95% CI as a diamond."""
    table = delta_table(deltas, threshold, preference)
    figure = new_figure(6.8, 3.4)
    ax = figure.subplots()
    if table.empty:
        empty_panel(ax, "no fine-tuned variant")
        return Plot(figure, table, "ΔIoU: no fine-tuned variant.")
    models = list(dict.fromkeys(table["model"]))
    strategies = list(dict.fromkeys(table["variant"]))
    colours = series_colours(len(strategies))
    width = 0.8 / len(strategies)
    drawn = set()  # strategies with a visible box; a legend entry only for those
    for _, row in table.iterrows():
        k = strategies.index(row["variant"])
        x = models.index(row["model"]) - 0.4 + width * (k + 0.5)
        values = row["_values"]
        if len(values) and np.ptp(values) <= FLAT_TOLERANCE:
            # every image the same change (a linear head leaves the backbone's attention as it was): the
            # box would be a line on the dashed zero line; say it in words at its place instead
            ax.plot([x - width * 0.4, x + width * 0.4], [values[0]] * 2, color="black", linewidth=2.2,
                    solid_capstyle="butt", gid=f"flat:{row['model']}:{row['variant']}")
            ax.annotate(f"{row['variant']}: ΔIoU = {values[0]:g}\non all {len(values)} images",
                        (x, values[0]), xytext=(0, 8), textcoords="offset points", ha="center", va="bottom",
                        fontsize=6.5, rotation=90, gid=f"note:{row['model']}:{row['variant']}")
            continue
        drawn.add(row["variant"])
        box = ax.boxplot([row["_values"]], positions=[x], widths=width * 0.8, patch_artist=True,
                         showfliers=True, flierprops={"markersize": 2})
        for patch in box["boxes"]:
            patch.set(facecolor=colours[k], hatch=HATCHES[k % len(HATCHES)], edgecolor="black", linewidth=0.6)
        for median in box["medians"]:
            median.set(color="white", linewidth=1.2)
        ax.errorbar(x, row["mean"], yerr=[[row["mean"] - row["ci_low"]], [row["ci_high"] - row["mean"]]],
                    fmt="D", color="black", markerfacecolor="white", markersize=4, capsize=2, elinewidth=0.8,
                    gid=f"mean:{row['model']}:{row['variant']}")
    ax.axhline(0, color="0.4", linewidth=0.8, linestyle="--")
    ax.set_xticks(range(len(models)), models)
    ax.set_xlim(-0.6, len(models) - 0.4)
    ax.set_ylabel(f"ΔIoU at {threshold:g}% mass (tuned − frozen)")
    handles = [Patch(facecolor=colours[k], hatch=HATCHES[k % len(HATCHES)], edgecolor="black",
                     label=strategy) for k, strategy in enumerate(strategies) if strategy in drawn]
    if handles:
        figure.legend(handles=handles, frameon=False, title="strategy", loc="outside right upper")
    ax.grid(axis="y", color="0.9", linewidth=0.6)
    data = table.drop(columns="_values")
    caption = (f"Change in IoU with the expert boxes after fine-tuning, per image (tuned − frozen, the "
               f"same images), at the {threshold:g}% mass threshold, heads averaged, last stored layer. "
               f"Boxes: quartiles and median (white); diamonds: mean with a t-based 95% CI. Below the "
               f"dashed line the tuned model looks less where experts look.")
    return Plot(figure, data, caption)
