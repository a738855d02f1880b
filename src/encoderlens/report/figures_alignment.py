"""Alignment study figures from the statistics summary: leaderboard, IoU by layer, threshold sensitivity.

Input: `alignment_summary.parquet` (one row per model, variant, method, layer, head, threshold, metric
with `n, n_dropped, mean, ci_low, ci_high`: a percentile-bootstrap 95% CI over images). Baselines
are rows of model "baseline".

Every single-threshold figure uses one reference threshold, and per-layer methods (CLS attention,
mean received attention) one layer per model and method: the last stored layer, or with
`layer_rule="best"` the layer of highest mean IoU at the reference threshold (chosen on the same
images it is reported on, so optimistic; the caption says so). Head -1, the mean over heads, is
used throughout: per-head figures come from the per-feature tables (`figures_heads`).

Small samples: rows of the summary flagged `small_n` (n below the config's `stats.min_n`) are marked
with a dagger in the leaderboard, carried as `small_n` in every figure's CSV, and counted in the
captions, which say their CIs rest on too few images to be read as intervals.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.patches import Patch

from .figures import (BASELINE_GREY, HATCHES, LINESTYLES, MARKERS, Plot, empty_panel, new_figure,
                      require_columns, series_colours, styled)

SUMMARY_COLUMNS = ["model", "variant", "method", "layer", "head", "threshold", "metric", "n", "mean",
                   "ci_low", "ci_high"]
METRICS = {"iou": "mean IoU", "coverage": "coverage (share of attention mass in the boxes)",
           "pointing_hit": "pointing-game hit rate"}
BASELINE = "baseline"
HEAD_MEAN = -1
KEYS = ["model", "variant", "method"]
SMALL_N_MARK = " \u2020"  # a dagger after the label of an entry flagged small_n


def _small_n(table: pd.DataFrame) -> pd.Series:
    """The summary's `small_n` flag (all False for a summary written before the flag existed)."""
    if "small_n" not in table:
        return pd.Series(False, index=table.index)
    return table["small_n"].fillna(False).astype(bool)


def small_n_caption(flagged: int, total: int, min_n: int | None, what: str = "entries") -> str:
    """The caption's warning when `flagged` of `total` plotted entries rest on too few images."""
    if not flagged:
        return ""
    below = f"fewer than {min_n} images (stats.min_n)" if min_n else "fewer images than stats.min_n"
    return (f" Caution: {flagged} of {total} {what} rest on {below}; their bootstrap CIs say little "
            f"about the population.")


def _clean(summary: pd.DataFrame) -> pd.DataFrame:
    require_columns(summary, SUMMARY_COLUMNS, "alignment summary")
    table = summary.copy()
    table["variant"] = table["variant"].fillna("").astype(str)
    for column in ("model", "method", "metric"):
        table[column] = table[column].astype(str)
    table["layer"] = table["layer"].astype(int)
    table["head"] = table["head"].astype(int)
    table["threshold"] = table["threshold"].astype(float)
    table["small_n"] = _small_n(table)
    return table


def _at_threshold(table: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Rows at the threshold; threshold-free metrics (NaN threshold) are kept as they are."""
    return table[np.isclose(table["threshold"], threshold) | table["threshold"].isna()]


def chosen_layers(summary: pd.DataFrame, threshold: float, layer_rule: str = "last") -> pd.DataFrame:
    """One layer per (model, variant, method): columns model, variant, method, layer.

    A method whose only layer is -1 (rollout, Grad-CAM, MAP probe, baselines) keeps -1.
    """
    if layer_rule not in ("last", "best"):
        raise ValueError(f"layer rule must be 'last' or 'best', got {layer_rule!r}")
    table = _clean(summary)
    iou = _at_threshold(table[(table["metric"] == "iou") & (table["head"] == HEAD_MEAN)], threshold)
    rows = []
    for key, group in iou.groupby(KEYS, sort=True):
        layered = group[group["layer"] >= 0]
        if layered.empty:
            layer = int(group["layer"].iloc[0])
        elif layer_rule == "last":
            layer = int(layered["layer"].max())
        else:  # ties go to the deeper layer, as "last" would
            best = layered.sort_values(["mean", "layer"], ascending=False)
            layer = int(best["layer"].iloc[0])
        rows.append(dict(zip(KEYS, key), layer=layer))
    return pd.DataFrame(rows, columns=KEYS + ["layer"])


def entry_label(model: str, variant: str, method: str, layer: int) -> str:
    if model == BASELINE:
        return f"baseline · {method}"
    label = f"{model} · {method}"
    if layer >= 0:
        label += f" L{layer}"
    if variant not in ("", "frozen"):
        label += f" [{variant}]"
    return label


def leaderboard_table(summary: pd.DataFrame, threshold: float, layer_rule: str = "last") -> pd.DataFrame:
    """One row per (model, variant, method) at its chosen layer, head mean, best mean IoU first.

    Columns: rank, label, model, variant, method, layer, then per metric `{metric}_mean`,
    `{metric}_ci_low`, `{metric}_ci_high`, `{metric}_n` (NaN where the summary lacks the metric).
    """
    table = _clean(summary)
    layers = chosen_layers(table, threshold, layer_rule)
    picked = _at_threshold(table[table["head"] == HEAD_MEAN], threshold).merge(layers, on=KEYS + ["layer"])
    rows = []
    for _, entry in layers.iterrows():
        row = {key: entry[key] for key in KEYS + ["layer"]}
        row["label"] = entry_label(entry["model"], entry["variant"], entry["method"], int(entry["layer"]))
        own = picked[(picked["model"] == entry["model"]) & (picked["variant"] == entry["variant"])
                     & (picked["method"] == entry["method"])]
        for metric in METRICS:
            values = own[own["metric"] == metric]
            first = values.iloc[0] if len(values) else None
            for stat in ("mean", "ci_low", "ci_high", "n"):
                row[f"{metric}_{stat}"] = float(first[stat]) if first is not None else float("nan")
            row[f"{metric}_small_n"] = bool(first["small_n"]) if first is not None else False
        row["small_n"] = any(row[f"{metric}_small_n"] for metric in METRICS)
        if row["small_n"]:
            row["label"] += SMALL_N_MARK
        rows.append(row)
    board = pd.DataFrame(rows)
    if board.empty:
        return board
    board = board.sort_values(["iou_mean", "label"], ascending=[False, True], na_position="last")
    board.insert(0, "rank", np.arange(1, len(board) + 1))
    order = ["rank", "label"] + KEYS + ["layer"]
    return board[order + [c for c in board.columns if c not in order]].reset_index(drop=True)


@styled
def plot_leaderboard(summary: pd.DataFrame, threshold: float, layer_rule: str = "last",
                     min_n: int | None = None) -> Plot:
    """Horizontal bars, best first (top), with 95% CIs: IoU at the threshold, coverage, pointing game."""
    board = leaderboard_table(summary, threshold, layer_rule)
    metrics = [m for m in METRICS if len(board) and board[f"{m}_mean"].notna().any()] or ["iou"]
    figure = new_figure(3.0 * len(metrics) + 1.6, 0.9 + 0.24 * max(len(board), 3))
    axes = np.atleast_1d(figure.subplots(1, len(metrics), sharey=True))
    if board.empty:
        empty_panel(axes[0], "no scored maps")
        return Plot(figure, board, "Leaderboard: no scored maps.")
    models = [m for m in dict.fromkeys(board["model"]) if m != BASELINE]
    colour = dict(zip(models, series_colours(len(models))))
    methods = list(dict.fromkeys(board["method"]))
    hatch = {method: HATCHES[i % len(HATCHES)] for i, method in enumerate(methods)}
    y = np.arange(len(board))[::-1]  # first row at the top
    for ax, metric in zip(axes, metrics):
        means = board[f"{metric}_mean"].to_numpy()
        # a percentile-bootstrap CI need not contain the mean in skewed samples: draw what reaches past it
        low = np.clip(means - board[f"{metric}_ci_low"].to_numpy(), 0, None)
        high = np.clip(board[f"{metric}_ci_high"].to_numpy() - means, 0, None)
        for position, (_, row), mean, lo, hi in zip(y, board.iterrows(), means, low, high):
            is_baseline = row["model"] == BASELINE
            ax.barh(position, 0 if np.isnan(mean) else mean, height=0.72,
                    color="white" if is_baseline else colour[row["model"]],
                    edgecolor=BASELINE_GREY if is_baseline else "black", linewidth=0.6,
                    hatch="///" if is_baseline else hatch[row["method"]], gid=f"bar:{row['label']}")
            if np.isfinite(mean) and np.isfinite(lo) and np.isfinite(hi):
                ax.errorbar(mean, position, xerr=[[lo], [hi]], fmt="none", ecolor="black",
                            elinewidth=0.8, capsize=2, gid=f"ci:{row['label']}")
        unit = f" at {threshold:g}% mass" if metric == "iou" else ""
        ax.set_xlabel(f"{METRICS[metric]}{unit}")
        ax.set_xlim(0, max(1e-9, np.nanmax(board[f"{metric}_ci_high"].to_numpy(dtype=float), initial=0)) * 1.08)
        ax.grid(axis="x", color="0.88", linewidth=0.6)
        ax.set_axisbelow(True)
    axes[0].set_yticks(y, board["label"].tolist())
    axes[0].set_ylim(-0.6, len(board) - 0.4)
    # what the hatching means: one pattern per method (colour is the model, named on the axis)
    handles = [Patch(facecolor="white", edgecolor="black", linewidth=0.6, hatch=hatch[method], label=method)
               for method in methods if method not in set(board.loc[board["model"] == BASELINE, "method"])]
    if (board["model"] == BASELINE).any():
        handles.append(Patch(facecolor="white", edgecolor=BASELINE_GREY, linewidth=0.6, hatch="///",
                             label="baseline (random, Gaussian, Sobel)"))
    figure.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4), frameon=False,
                  title="hatch: method", title_fontsize=8)
    layer_text = ("the last stored layer" if layer_rule == "last"
                  else "the layer of highest mean IoU on these images (optimistic)")
    n_images = int(np.nanmax(board["iou_n"])) if board["iou_n"].notna().any() else 0
    caption = (
        f"Leaderboard of attention methods against expert boxes, best mean IoU first. IoU of the "
        f"smallest region holding {threshold:g}% of the attention mass; per-layer methods at "
        f"{layer_text}; heads averaged. Bars: mean over images (up to n = {n_images}); whiskers: 95% "
        f"percentile-bootstrap CI over images. Hatched white bars: baselines (random, centred "
        f"Gaussian, Sobel) scored the same way.")
    flagged = int(board["small_n"].sum())
    if flagged:
        caption += small_n_caption(flagged, len(board), min_n) + " They are marked \u2020."
    return Plot(figure, board, caption)


def _layered_rows(table: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """IoU rows at the threshold, head mean, of the methods stored at two or more layers."""
    iou = _at_threshold(table[(table["metric"] == "iou") & (table["head"] == HEAD_MEAN)], threshold)
    iou = iou[iou["layer"] >= 0]
    counts = iou.groupby(KEYS)["layer"].nunique()
    keep = counts[counts >= 2].reset_index()[KEYS]
    return iou.merge(keep, on=KEYS).sort_values(KEYS + ["layer"]).reset_index(drop=True)


def _baseline_rows(table: pd.DataFrame, threshold: float) -> pd.DataFrame:
    rows = table[(table["model"] == BASELINE) & (table["metric"] == "iou")]
    return _at_threshold(rows, threshold).sort_values("method").reset_index(drop=True)


def _variant_style(variant: str, variants: list[str]) -> str:
    return LINESTYLES[variants.index(variant) % len(LINESTYLES)] if variant in variants else "-"


def _panel_grid(count: int, width: float, height: float, extra_height: float = 0.4):
    """A grid of `count` panels, up to three per row, sharing both axes; unused panels hidden."""
    columns = min(3, max(1, count))
    n_rows = max(1, int(np.ceil(count / columns)))
    figure = new_figure(width * columns + 2.2, height * n_rows + extra_height)
    axes = np.atleast_1d(figure.subplots(n_rows, columns, sharex=True, sharey=True, squeeze=False)).ravel()
    for ax in axes[count:]:
        ax.set_visible(False)
    return figure, axes, columns


def _series_styles(rows: pd.DataFrame) -> dict:
    """(variant, method) -> (label, colour, marker, line style), the same in every panel, so one legend
    beside the panels serves them all: colour and marker by series, line style by variant."""
    keys = list(dict.fromkeys(zip(rows["variant"], rows["method"])))
    keys.sort(key=lambda key: (key[0] != "frozen", key[0]))
    variants = sorted({v for v, _ in keys}, key=lambda v: (v != "frozen", v))
    colours = series_colours(len(keys))
    return {key: (key[1] + (f" [{key[0]}]" if key[0] not in ("", "frozen") else ""), colours[i],
                  MARKERS[i % len(MARKERS)], _variant_style(key[0], variants)) for i, key in enumerate(keys)}


def _figure_legend(figure, axes) -> None:
    """One legend for all panels, outside them on the right (each label once)."""
    unique = {}
    for ax in axes:
        if ax.get_visible():
            for handle, label in zip(*ax.get_legend_handles_labels()):
                unique.setdefault(label, handle)
    labels = sorted(unique, key=lambda label: label.startswith("baseline"))  # series first, stable
    if labels:
        figure.legend([unique[label] for label in labels], labels, loc="outside right center", frameon=False)


def _label_outer(axes, columns: int, count: int, xlabel: str, ylabel: str) -> None:
    """Axis labels on the left column and the bottom panel of each column only (the axes are shared)."""
    for index, ax in enumerate(axes[:max(1, count)]):
        if index % columns == 0:
            ax.set_ylabel(ylabel)
        if index + columns >= count:
            ax.set_xlabel(xlabel)
            ax.xaxis.set_tick_params(labelbottom=True)


@styled
def plot_iou_by_layer(summary: pd.DataFrame, threshold: float, min_n: int | None = None) -> Plot:
    """Mean IoU per layer (head mean) with 95% CIs: one panel per model, one series per method and
    variant, each CI a whisker dodged beside the others (bands of several series hid each other), the
    baselines in every panel."""
    table = _clean(summary)
    rows = _layered_rows(table, threshold)
    baselines = _baseline_rows(table, threshold)
    models = list(dict.fromkeys(rows["model"]))
    figure, axes, columns = _panel_grid(len(models), 2.5, 2.2)
    if rows.empty:
        axes[0].set_visible(True)
        empty_panel(axes[0], "no method is stored at more than one layer")
    styles = _series_styles(rows)
    for ax, model in zip(axes, models):
        groups = list(rows[rows["model"] == model].groupby(KEYS, sort=False))
        groups.sort(key=lambda item: list(styles).index((item[0][1], item[0][2])))
        for index, ((_, variant, method), group) in enumerate(groups):
            label, colour, marker, linestyle = styles[(variant, method)]
            dodge = (index - (len(groups) - 1) / 2) * 0.09
            means = group["mean"].to_numpy(dtype=float)
            low = np.clip(means - group["ci_low"].to_numpy(dtype=float), 0, None)
            high = np.clip(group["ci_high"].to_numpy(dtype=float) - means, 0, None)
            drawn = ax.errorbar(group["layer"].to_numpy(dtype=float) + dodge, means, yerr=[low, high],
                                color=colour, marker=marker, linestyle=linestyle, markersize=3.5,
                                linewidth=1.1, elinewidth=0.8, capsize=1.5, label=label)
            drawn.lines[0].set_gid(f"line:{entry_label(model, variant, method, -1)}")
        for index, (_, row) in enumerate(baselines.iterrows()):
            ax.axhline(row["mean"], color=BASELINE_GREY, linestyle=LINESTYLES[(index + 1) % len(LINESTYLES)],
                       linewidth=1.0, label=f"baseline · {row['method']}", gid=f"baseline:{row['method']}")
        ax.set_title(model)
        ax.grid(color="0.9", linewidth=0.6)
    if not rows.empty:
        layers = sorted(rows["layer"].unique())
        axes[0].set_xticks(layers if len(layers) <= 16 else layers[::2])
    _label_outer(axes, columns, len(models), "layer (0 = first block)", f"mean IoU at {threshold:g}% mass")
    _figure_legend(figure, axes)
    data = pd.concat([rows, baselines], ignore_index=True)[SUMMARY_COLUMNS + ["small_n"]]
    caption = (f"Mean IoU with the expert boxes per layer, heads averaged, at the {threshold:g}% mass "
               f"threshold, one panel per model; whiskers: 95% percentile-bootstrap CI over images, the "
               f"series set slightly apart at each layer so that none hides another. Grey horizontal "
               f"lines: baselines (the same in every panel). Line style marks the variant (solid: frozen).")
    points = data.drop_duplicates(KEYS + ["layer", "threshold"])
    caption += small_n_caption(int(points["small_n"].sum()), len(points), min_n, "plotted points")
    return Plot(figure, data, caption)


@styled
def plot_threshold_sensitivity(summary: pd.DataFrame, threshold: float, layer_rule: str = "last",
                               min_n: int | None = None) -> Plot:
    """Mean IoU against the mass threshold, one panel per model (its methods at their chosen layer)."""
    table = _clean(summary)
    layers = chosen_layers(table, threshold, layer_rule)
    iou = table[(table["metric"] == "iou") & (table["head"] == HEAD_MEAN)]
    picked = iou.merge(layers, on=KEYS + ["layer"]).sort_values(KEYS + ["threshold"])
    baselines = iou[iou["model"] == BASELINE].sort_values(["method", "threshold"])
    models = [m for m in dict.fromkeys(picked["model"]) if m != BASELINE]
    figure, axes, columns = _panel_grid(len(models), 2.5, 2.1)
    if not models:
        axes[0].set_visible(True)
        empty_panel(axes[0], "no scored maps")
    styles = _series_styles(picked[picked["model"] != BASELINE])
    for ax, model in zip(axes, models):
        own = picked[picked["model"] == model]
        for (variant, method, layer), group in own.groupby(["variant", "method", "layer"], sort=False):
            label, colour, marker, linestyle = styles[(variant, method)]
            ax.fill_between(group["threshold"], group["ci_low"], group["ci_high"], color=colour,
                            alpha=0.15, linewidth=0)
            gid = entry_label(model, variant, method, int(layer)).split(" · ", 1)[1]
            ax.plot(group["threshold"], group["mean"], color=colour, marker=marker, linestyle=linestyle,
                    markersize=3.5, linewidth=1.1, label=label, gid=f"line:{model}:{gid}")
        for index, (method, group) in enumerate(baselines.groupby("method", sort=True)):
            ax.plot(group["threshold"], group["mean"], color=BASELINE_GREY,
                    linestyle=LINESTYLES[(index + 1) % len(LINESTYLES)], linewidth=1.0,
                    label=f"baseline · {method}")
        ax.axvline(threshold, color="0.75", linewidth=0.6, zorder=0)
        ax.set_title(model)
        ax.grid(color="0.92", linewidth=0.6)
    _label_outer(axes, columns, len(models), "mass threshold (% of attention)", "mean IoU")
    # one legend beside the panels: inside a panel it covered the curves
    _figure_legend(figure, axes)
    data = pd.concat([picked, baselines], ignore_index=True)[SUMMARY_COLUMNS + ["small_n"]]
    caption = (f"Mean IoU against the attention-mass threshold (the share of attention mass the "
               f"scored region holds), per model, heads averaged, per-layer methods at "
               f"{'the last stored layer' if layer_rule == 'last' else 'their best layer'} (the layer of "
               f"each line is in the numbers, column layer); bands: 95% bootstrap CI over images; grey: "
               f"baselines. The vertical line marks {threshold:g}%, the threshold of the leaderboard.")
    points = data.drop_duplicates(KEYS + ["layer", "threshold"])
    caption += small_n_caption(int(points["small_n"].sum()), len(points), min_n, "plotted points")
    return Plot(figure, data, caption)
