"""Figures of the geographic depth study (results/<dataset>/geo/): a world plot of per-country
GeoScore, a per-continent forest plot with CIs, the CKA heatmap between models, and a failure gallery
(the worst queries with their attention map and nearest gallery image)."""

from __future__ import annotations

from typing import Mapping

import h5py
import numpy as np
import pandas as pd
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize

from ..alignment.resize import upsample
from .figures import (MARKERS, Plot, empty_panel, new_figure, series_colours, styled)
from .figures_overlays import OVERLAY_CMAP, display_image

WORLD_METRIC = "geoscore"


def _entity(table: pd.DataFrame) -> pd.Series:
    return table["model"].where(table["variant"] == "frozen", table["model"] + "/" + table["variant"])


@styled
def plot_regional_world(regional: pd.DataFrame, metric: str = WORLD_METRIC) -> Plot:
    """Per model, countries at the spherical mean of their images on an equirectangular grid, coloured
    by the metric's mean, sized by the country's share of the sample; hollow markers for countries
    below min_images."""
    rows = regional[(regional["attribute"] == "country") & (regional["metric"] == metric)].copy()
    rows["entity"] = _entity(rows)
    entities = list(dict.fromkeys(rows["entity"]))
    figure = new_figure(7.0, 2.9 * max(1, len(entities)))
    axes = figure.subplots(max(1, len(entities)), 1, squeeze=False)[:, 0]
    if rows.empty:
        empty_panel(axes[0], f"no per-country {metric}")
        return Plot(figure, rows, f"No per-country {metric} was computed.")
    vmin, vmax = float(rows["mean"].min()), float(rows["mean"].max())
    for ax, entity in zip(axes, entities):
        block = rows[rows["entity"] == entity]
        sizes = 20 + 400 * block["share"].to_numpy()
        tested = ~block["below_min_n"].to_numpy(bool)
        for subset, style in ((tested, dict(edgecolors="black", linewidths=0.6, alpha=1.0, label=None)),
                              (~tested, dict(edgecolors="none", linewidths=0, alpha=0.45,
                                             label="fewer than min_images queries (not tested)"))):
            if subset.any():
                ax.scatter(block["centroid_longitude"][subset], block["centroid_latitude"][subset],
                                     c=block["mean"][subset], s=sizes[subset], cmap="cividis", vmin=vmin,
                                     vmax=vmax, **style)
        ax.set_xlim(-180, 180)
        ax.set_ylim(-90, 90)
        ax.set_aspect("equal")
        ax.set_xticks(range(-180, 181, 60))
        ax.set_yticks(range(-90, 91, 30))
        ax.grid(color="0.9", linewidth=0.5)
        ax.set_xlabel("longitude (°)")
        ax.set_ylabel("latitude (°)")
        ax.set_title(entity)
        if (~tested).any():
            ax.legend(loc="lower left", frameon=False)
        figure.colorbar(ScalarMappable(Normalize(vmin, vmax), "cividis"), ax=ax, label=f"mean {metric} (0-5000)",
                        shrink=0.8)
    caption = (f"Mean kNN {metric} per country, drawn at the spherical mean of the country's images on a "
               f"plain equirectangular grid (no basemap); marker area follows the country's share of the "
               f"queries; faded markers without an outline: fewer than min_images queries (left out of the tests). "
               f"{rows['group'].nunique()} countries, {len(entities)} models/variants.")
    return Plot(figure, rows.drop(columns=["entity"]), caption)


@styled
def plot_continent_forest(regional: pd.DataFrame, metric: str = WORLD_METRIC) -> Plot:
    """Per continent: each model's mean with its bootstrap CI, the continent's share in the label."""
    rows = regional[(regional["attribute"] == "continent") & (regional["metric"] == metric)].copy()
    rows["entity"] = _entity(rows)
    continents = sorted(rows["group"].astype(str).unique())
    entities = list(dict.fromkeys(rows["entity"]))
    figure = new_figure(6.0, 0.5 + 0.45 * max(1, len(continents)) * max(1, len(entities)) ** 0.5)
    ax = figure.subplots()
    if rows.empty:
        empty_panel(ax, f"no per-continent {metric}")
        return Plot(figure, rows, f"No per-continent {metric} was computed.")
    colours = series_colours(len(entities))
    offsets = np.linspace(-0.25, 0.25, len(entities)) if len(entities) > 1 else [0.0]
    for k, entity in enumerate(entities):
        block = rows[rows["entity"] == entity].set_index("group")
        y = np.array([continents.index(str(g)) for g in block.index]) + offsets[k]
        low = (block["mean"] - block["ci_low"]).clip(lower=0).fillna(0)
        high = (block["ci_high"] - block["mean"]).clip(lower=0).fillna(0)
        ax.errorbar(block["mean"], y, xerr=[low, high], fmt=MARKERS[k % len(MARKERS)], color=colours[k],
                    capsize=2, label=entity)
    shares = rows.groupby("group")["share"].first()
    ns = rows.groupby("group")["n"].first()
    ax.set_yticks(range(len(continents)))
    ax.set_yticklabels([f"{c}\n{ns[c]} queries ({shares[c]:.0%})" for c in continents])
    ax.invert_yaxis()
    ax.set_xlabel(f"mean {metric} (95% bootstrap CI)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    p = rows.groupby("entity")["p_kruskal"].first()
    tests = "; ".join(f"{e}: p = {v:.3g}" if np.isfinite(v) else f"{e}: no test" for e, v in p.items())
    caption = (f"Mean kNN {metric} per continent with 95% percentile bootstrap CIs over queries; each label "
               f"gives the continent's number and share of queries, so that under-represented regions "
               f"stand out. Kruskal-Wallis across continents with at least min_images queries: {tests}.")
    return Plot(figure, rows.drop(columns=["entity"]), caption)


@styled
def plot_cka(cka: pd.DataFrame) -> Plot:
    """One heatmap per feature pair on the diagonal (cls-cls, mean-mean ...): models x models."""
    same = cka[cka["features_a"] == cka["features_b"]]
    features = list(dict.fromkeys(same["features_a"]))
    figure = new_figure(3.3 * max(1, len(features)), 3.2)
    axes = figure.subplots(1, max(1, len(features)), squeeze=False)[0]
    if same.empty:
        empty_panel(axes[0], "fewer than two models: no CKA")
        return Plot(figure, cka, "Linear CKA needs at least two models or variants.")
    models = sorted(set(same["model_a"]) | set(same["model_b"]))
    for ax, feature in zip(axes, features):
        matrix = np.eye(len(models))
        for row in same[same["features_a"] == feature].itertuples():
            i, j = models.index(row.model_a), models.index(row.model_b)
            matrix[i, j] = matrix[j, i] = row.cka
        image = ax.imshow(matrix, cmap="cividis", vmin=0, vmax=1)
        for i in range(len(models)):
            for j in range(len(models)):
                ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center",
                        color="black" if matrix[i, j] > 0.55 else "white", fontsize=7)
        ax.set_xticks(range(len(models)))
        ax.set_xticklabels(models, rotation=45, ha="right")
        ax.set_yticks(range(len(models)))
        ax.set_yticklabels(models)
        ax.set_title(f"{feature} embeddings")
    figure.colorbar(image, ax=list(axes), label="linear CKA", shrink=0.8)
    n = int(same["n_images"].min())
    caption = (f"Linear CKA (Kornblith et al. 2019) between every pair of models' embeddings of the same "
               f"{n} images, per embedding kind; 1 = the same representation up to rotation and scale.")
    return Plot(figure, same, caption)


def _read_map(path: str, image_id: str) -> np.ndarray | None:
    """Heads-mean CLS attention of the deepest stored layer, or the rollout, or None."""
    with h5py.File(path, "r") as store:
        ids = [i.decode() if isinstance(i, bytes) else str(i) for i in store["ids"][()]]
        if image_id not in ids:
            return None
        row = ids.index(image_id)
        if "cls" in store:
            return store["cls"][row, -1].astype(np.float64).mean(axis=0)
        if "rollout" in store:
            return store["rollout"][row].astype(np.float64)
    return None


@styled
def plot_failure_gallery(failures: pd.DataFrame, manifest: pd.DataFrame, attention: Mapping[str, str],
                         features: str, method: str, n_show: int = 3, root=".", max_side: int = 256) -> Plot:
    """One row per model or variant: its `n_show` lowest-GeoScore queries (of the given features and
    kNN method), each as the query with its attention map beside the nearest gallery image."""
    paths = manifest.set_index("image_id")["path"].astype(str)
    failures = failures[(failures["features"] == features) & (failures["method"] == method)].copy()
    failures["entity"] = _entity(failures)
    shown = failures[failures["rank"] <= n_show]
    entities = list(dict.fromkeys(shown["entity"]))
    figure = new_figure(1.75 * 2 * n_show, 2.0 * max(1, len(entities)))
    axes = figure.subplots(max(1, len(entities)), 2 * n_show, squeeze=False)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_frame_on(False)
    if shown.empty:
        empty_panel(axes[0, 0], "no failures listed")
        return Plot(figure, shown, "No kNN queries were scored.")
    for r, entity in enumerate(entities):
        for row in shown[shown["entity"] == entity].itertuples():
            ax_query, ax_neighbour = axes[r, 2 * (row.rank - 1)], axes[r, 2 * (row.rank - 1) + 1]
            pixels = display_image(f"{root}/{paths[row.image_id]}", max_side)
            ax_query.imshow(pixels)
            grid = _read_map(attention[entity], row.image_id) if entity in attention else None
            if grid is not None:
                height, width = pixels.shape[:2]
                scaled = upsample(grid[None], (height, width))[0]
                span = scaled.max() - scaled.min()
                ax_query.imshow((scaled - scaled.min()) / span if span > 0 else np.zeros_like(scaled),
                                cmap=OVERLAY_CMAP, alpha=0.5, vmin=0, vmax=1)
            ax_query.set_title(f"#{row.rank} {row.true_country} -> {row.pred_country}\n"
                               f"{row.distance_km:,.0f} km, GeoScore {row.geoscore:.0f}", fontsize=7)
            neighbour = str(row.neighbour_id)
            if neighbour in paths.index:
                ax_neighbour.imshow(display_image(f"{root}/{paths[neighbour]}", max_side))
                ax_neighbour.set_title("nearest gallery\nimage", fontsize=7)
        axes[r, 0].set_ylabel(entity, fontsize=8)
    caption = (f"The {n_show} lowest-GeoScore kNN queries ({features} embeddings, {method}) of each of "
               f"{len(entities)} models/variants (rows): each query with its attention (heads mean of the "
               f"deepest stored CLS layer, min-max scaled, inferno; none for models without CLS attention), "
               f"true -> predicted country and error, and to its right the nearest gallery image, whose "
               f"location was the prediction.")
    return Plot(figure, shown.drop(columns=["entity"]), caption)
