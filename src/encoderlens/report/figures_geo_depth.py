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


def _layer(name: str) -> int:
    return int(name.split("/", 1)[1])


def _cka_cell(ax, matrix: np.ndarray):
    image = ax.imshow(matrix, cmap="cividis", vmin=0, vmax=1)
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center",
                    color="black" if matrix[i, j] > 0.55 else "white", fontsize=7)
    return image


@styled
def plot_cka(cka: pd.DataFrame) -> Plot:
    """First row: one models x models heatmap per embedding kind compared with itself (cls-cls,
    mean-mean ...). Where both models of a pair stored layers (`layers/<l>`): a second row with one
    layer x layer heatmap per model pair (model_a's layers down, model_b's across)."""
    is_layer = cka["features_a"].str.startswith("layers/") & cka["features_b"].str.startswith("layers/")
    same = cka[(cka["features_a"] == cka["features_b"]) & ~is_layer]
    layered = cka[is_layer]
    features = list(dict.fromkeys(same["features_a"]))
    pairs = list(dict.fromkeys(zip(layered["model_a"], layered["model_b"])))
    columns = max(1, len(features), len(pairs))
    rows = 2 if pairs and features else 1
    figure = new_figure(3.3 * columns, 3.2 * rows + (0.4 if pairs else 0))
    axes = figure.subplots(rows, columns, squeeze=False)
    for ax in axes.ravel():
        ax.set_visible(False)
    if same.empty and layered.empty:
        axes[0, 0].set_visible(True)
        empty_panel(axes[0, 0], "fewer than two models: no CKA")
        return Plot(figure, cka, "Linear CKA needs at least two models or variants.")
    image = None
    models = sorted(set(same["model_a"]) | set(same["model_b"]))
    for ax, feature in zip(axes[0], features):
        ax.set_visible(True)
        matrix = np.eye(len(models))
        for row in same[same["features_a"] == feature].itertuples():
            i, j = models.index(row.model_a), models.index(row.model_b)
            matrix[i, j] = matrix[j, i] = row.cka
        image = _cka_cell(ax, matrix)
        ax.set_xticks(range(len(models)))
        ax.set_xticklabels(models, rotation=45, ha="right")
        ax.set_yticks(range(len(models)))
        ax.set_yticklabels(models)
        ax.set_title(f"{feature} embeddings")
    for ax, (model_a, model_b) in zip(axes[rows - 1] if features else axes[0], pairs):
        ax.set_visible(True)
        block = layered[(layered["model_a"] == model_a) & (layered["model_b"] == model_b)]
        layers_a = sorted(set(block["features_a"]), key=_layer)
        layers_b = sorted(set(block["features_b"]), key=_layer)
        matrix = np.full((len(layers_a), len(layers_b)), np.nan)
        for row in block.itertuples():
            matrix[layers_a.index(row.features_a), layers_b.index(row.features_b)] = row.cka
        image = _cka_cell(ax, matrix)
        ax.set_xticks(range(len(layers_b)))
        ax.set_xticklabels([str(_layer(name)) for name in layers_b])
        ax.set_yticks(range(len(layers_a)))
        ax.set_yticklabels([str(_layer(name)) for name in layers_a])
        ax.set_xlabel(f"{model_b} layer")
        ax.set_ylabel(f"{model_a} layer")
        ax.set_title(f"{model_a} vs {model_b}", fontsize=8)
    figure.colorbar(image, ax=[ax for ax in axes.ravel() if ax.get_visible()], label="linear CKA", shrink=0.8)
    drawn = pd.concat([same, layered], ignore_index=True)
    n = int(drawn["n_images"].min())
    caption = (f"Linear CKA (Kornblith et al. 2019) between every pair of models' embeddings of the same "
               f"{n} images, per embedding kind; 1 = the same representation up to rotation and scale.")
    if pairs:
        caption += (f" {'Second row' if features else 'Panels'}: per model pair, CKA between every stored "
                    f"layer of the one (rows) and of the other (columns; the CLS token of each layer).")
    return Plot(figure, drawn, caption)


def failure_attention(store: h5py.File, row: int) -> np.ndarray | None:
    """The map a failure is shown with (gallery figure, dashboard): the heads mean of the deepest
    stored CLS layer of attention.h5 row `row`, else the rollout; None when the file holds neither."""
    if "cls" in store:
        return store["cls"][row, -1].astype(np.float64).mean(axis=0)
    if "rollout" in store:
        return store["rollout"][row].astype(np.float64)
    return None


def _read_map(path: str, image_id: str) -> np.ndarray | None:
    """`failure_attention` of one image of an attention file, or None."""
    with h5py.File(path, "r") as store:
        ids = [i.decode() if isinstance(i, bytes) else str(i) for i in store["ids"][()]]
        if image_id not in ids:
            return None
        return failure_attention(store, ids.index(image_id))


def failure_rows(failures: pd.DataFrame, features: str, method: str, n_show: int,
                 probe_level: str = "country") -> list[tuple[str, str, pd.DataFrame]]:
    """The gallery's rows: per model or variant (entity), its `n_show` lowest-GeoScore kNN queries of
    (features, method), then, where the probes ran, its `n_show` most confident wrong probe answers at
    `probe_level` on the same features (else the first features probed). [(entity, kind, rows)]."""
    failures = failures.copy()
    if "kind" not in failures.columns:
        failures["kind"] = "knn"
    failures["entity"] = _entity(failures)
    knn = failures[(failures["kind"] == "knn") & (failures["features"] == features) & (failures["method"] == method)]
    probe = failures[(failures["kind"] == "probe") & (failures.get("level") == probe_level)]
    out = []
    for entity in dict.fromkeys(failures["entity"]):
        own = knn[(knn["entity"] == entity) & (knn["rank"] <= n_show)]
        if len(own):
            out.append((entity, "knn", own))
        errors = probe[probe["entity"] == entity]
        if len(errors):
            chosen = features if features in set(errors["features"]) else errors["features"].iloc[0]
            errors = errors[(errors["features"] == chosen) & (errors["rank"] <= n_show)]
            out.append((entity, "probe", errors))
    return out


@styled
def plot_failure_gallery(failures: pd.DataFrame, manifest: pd.DataFrame, attention: Mapping[str, str],
                         features: str, method: str, n_show: int = 3, root=".", max_side: int = 256,
                         probe_level: str = "country") -> Plot:
    """One row per model or variant and kind of failure: its `n_show` lowest-GeoScore kNN queries (of
    the given features and kNN method), and its `n_show` most confident wrong probe answers at
    `probe_level` (where failures.parquet lists them); each image with its attention map beside its
    nearest gallery image."""
    paths = manifest.set_index("image_id")["path"].astype(str)
    rows = failure_rows(failures, features, method, n_show, probe_level)
    figure = new_figure(1.75 * 2 * n_show, 2.0 * max(1, len(rows)))
    axes = figure.subplots(max(1, len(rows)), 2 * n_show, squeeze=False)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_frame_on(False)
    if not rows:
        empty_panel(axes[0, 0], "no failures listed")
        return Plot(figure, failures.iloc[:0], "No kNN queries were scored and no probe answer was wrong.")
    for r, (entity, kind, shown) in enumerate(rows):
        for row in shown.itertuples():
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
            if kind == "knn":
                ax_query.set_title(f"#{row.rank} {row.true_country} -> {row.pred_country}\n"
                                   f"{row.distance_km:,.0f} km, GeoScore {row.geoscore:.0f}", fontsize=7)
            else:
                ax_query.set_title(f"#{row.rank} {row.true_label} -> {row.pred_label}\n"
                                   f"p = {row.confidence:.2f}, {row.distance_km:,.0f} km", fontsize=7)
            neighbours = str(getattr(row, "neighbours", "") or "").split()
            neighbour = neighbours[0] if neighbours else str(getattr(row, "neighbour_id", ""))
            if neighbour in paths.index:
                ax_neighbour.imshow(display_image(f"{root}/{paths[neighbour]}", max_side))
                ax_neighbour.set_title("nearest gallery\nimage", fontsize=7)
        axes[r, 0].set_ylabel(entity if kind == "knn" else f"{entity}\nprobe errors", fontsize=8)
    shown = pd.concat([block for _, _, block in rows], ignore_index=True).drop(columns=["entity"])
    n_probe = sum(kind == "probe" for _, kind, _ in rows)
    caption = (f"The {n_show} lowest-GeoScore kNN queries ({features} embeddings, {method}) of each of "
               f"{len({e for e, _, _ in rows})} models/variants (rows), each with its attention (heads mean of the "
               f"deepest stored CLS layer, min-max scaled, inferno; none for models without CLS attention), "
               f"true -> predicted country and error, and to its right the nearest gallery image, whose "
               f"location was the prediction.")
    if n_probe:
        caption += (f" Rows marked 'probe errors' ({n_probe}): the {n_show} held-out images the {probe_level} "
                    f"probe got wrong with the highest confidence (p: the predicted class's probability; km: "
                    f"to the spherical mean of the predicted class's images), each beside its nearest "
                    f"gallery image by the same embedding.")
    return Plot(figure, shown, caption)
