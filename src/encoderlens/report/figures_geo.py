"""Street-view study figures: probe accuracies, cosine vs distance, GeoScore distribution, gallery.

Inputs are the geo stage's tables (`probes.parquet`, `knn_predictions.parquet`, `geometry_bins.parquet`,
`gallery.parquet`, `gallery_groups.parquet`) with a `model` (and `variant`) column added by the
caller, plus the sampled pairs of the geometry study for the hexbin: `geometry_pairs` recomputes them
from the embeddings with the same seed and pair count, and checks that their binned means are the
table's, so the hexbin and the line drawn over it describe the same pairs.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from encoderlens.geo.geometry import binned_cosine, pair_cosine_distance

from .figures import (BASELINE_GREY, COLORMAP, HATCHES, LINESTYLES, MARKERS, Plot, empty_panel,
                      new_figure, require_columns, series_colours, styled)

GEOSCORE_MAX = 5000.0
DISTANCE_FLOOR_KM = 1.0  # the left end of the log distance axes
LEVEL_ORDER = ("country", "region", "sub-region", "city")


def wilson_interval(successes: np.ndarray, trials: np.ndarray, z: float = 1.959963984540054):
    """Wilson score 95% interval of binomial proportions (NaN where trials is 0)."""
    successes = np.asarray(successes, dtype=float)
    trials = np.asarray(trials, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = successes / trials
        denominator = 1 + z * z / trials
        centre = (p + z * z / (2 * trials)) / denominator
        half = z * np.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    # at p = 0 or 1 one end is the proportion itself; rounding must not put it on the wrong side
    return np.clip(np.minimum(centre - half, p), 0, 1), np.clip(np.maximum(centre + half, p), 0, 1)


def probe_table(probes: pd.DataFrame) -> pd.DataFrame:
    """Probe rows that were fitted, with the count of correct test images and a Wilson 95% CI."""
    require_columns(probes, ["model", "level", "features", "n_test", "top1", "majority_top1", "probeable"],
                    "probe table")
    table = probes[probes["probeable"].astype(bool)].copy()
    table["correct"] = np.rint(table["top1"] * table["n_test"]).astype(int)
    table["ci_low"], table["ci_high"] = wilson_interval(table["correct"], table["n_test"])
    order = {level: i for i, level in enumerate(LEVEL_ORDER)}
    table["_level"] = table["level"].map(order).fillna(len(order))
    table = table.sort_values(["_level", "model", "features"]).drop(columns="_level")
    return table[["model", "level", "features", "n_test", "correct", "top1", "ci_low", "ci_high",
                  "majority_top1"]].reset_index(drop=True)


@styled
def plot_probe_accuracy(probes: pd.DataFrame) -> Plot:
    """Top-1 accuracy of the linear probes per level: bars per model × embedding, majority-class ticks."""
    table = probe_table(probes)
    levels = [level for level in dict.fromkeys(table["level"])]
    figure = new_figure(2.4 * max(1, len(levels)) + 1.8, 3.4)
    axes = np.atleast_1d(figure.subplots(1, max(1, len(levels)), sharey=True, squeeze=False).ravel())
    if table.empty:
        empty_panel(axes[0], "no probe could be fitted")
        return Plot(figure, table, "Probe accuracies: no probe could be fitted.")
    entries = list(dict.fromkeys(zip(table["model"], table["features"])))
    models = list(dict.fromkeys(table["model"]))
    features = list(dict.fromkeys(table["features"]))
    colours = dict(zip(models, series_colours(len(models))))
    width = 0.8 / len(entries)
    for ax, level in zip(axes, levels):
        own = table[table["level"] == level].set_index(["model", "features"])
        for index, (model, feature) in enumerate(entries):
            if (model, feature) not in own.index:
                continue
            row = own.loc[(model, feature)]
            x = -0.4 + width * (index + 0.5)
            ax.bar(x, 100 * row["top1"], width=width * 0.92, color=colours[model], edgecolor="black",
                   linewidth=0.5, hatch=HATCHES[features.index(feature) % len(HATCHES)],
                   label=f"{model} · {feature}", gid=f"bar:{level}:{model}:{feature}")
            ax.errorbar(x, 100 * row["top1"], yerr=[[100 * (row["top1"] - row["ci_low"])],
                                                    [100 * (row["ci_high"] - row["top1"])]],
                        fmt="none", ecolor="black", elinewidth=0.7, capsize=1.5)
            ax.plot([x - width / 2, x + width / 2], [100 * row["majority_top1"]] * 2, color=BASELINE_GREY,
                    linewidth=1.6, solid_capstyle="butt")
        ax.set_title(f"{level} (n = {int(table[table['level'] == level]['n_test'].max())} test images)")
        ax.set_xticks([])
        ax.set_xlim(-0.5, 0.5)
        ax.grid(axis="y", color="0.9", linewidth=0.6)
        ax.set_axisbelow(True)
    axes[0].set_ylabel("top-1 accuracy (%)")
    handles, labels = axes[0].get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    figure.legend(unique.values(), unique.keys(), loc="outside right center", frameon=False)
    caption = ("Top-1 accuracy of linear probes on frozen embeddings, per label level, model (colour) "
               "and embedding (hatch). Whiskers: Wilson 95% interval over the test images; grey ticks: "
               "the majority-class accuracy on the same split.")
    return Plot(figure, table, caption)


def geometry_pairs(embeddings: np.ndarray, latlon: np.ndarray, n_pairs: int, seed: int,
                   bins_km: Sequence[float], table_bins: pd.DataFrame | None = None, source: str = "") -> pd.DataFrame:
    """The geometry study's pairs (cosine, distance_km), recomputed; checked against its binned table."""
    n_pairs = min(int(n_pairs), len(latlon) * (len(latlon) - 1) // 2)
    _, _, cosine, distance = pair_cosine_distance(embeddings, latlon, n_pairs=n_pairs, seed=seed)
    if table_bins is not None:
        recomputed = binned_cosine(cosine, distance, bins_km)
        stored = table_bins.reset_index(drop=True)
        same = (len(recomputed) == len(stored)
                and np.array_equal(recomputed["count"].to_numpy(), stored["count"].to_numpy())
                and np.allclose(recomputed["cosine_mean"], stored["cosine_mean"], rtol=1e-9, atol=1e-12,
                                equal_nan=True))
        if not same:
            raise ValueError(f"{source}: the binned cosine table does not match the pairs recomputed from "
                             f"the embeddings ({n_pairs} pairs, seed {seed}); the inputs are out of step")
    return pd.DataFrame({"cosine": cosine, "distance_km": distance})


@styled
def plot_cosine_distance(panels: Sequence[tuple[str, pd.DataFrame, pd.DataFrame]], gridsize: int = 40) -> Plot:
    """Per panel (title, pairs, bins): hexbin of pair counts, binned mean cosine as steps with ±1 s.d."""
    columns = min(3, max(1, len(panels)))
    n_rows = max(1, int(np.ceil(len(panels) / columns)))
    figure = new_figure(3.0 * columns + 0.9, 2.7 * n_rows + 0.3)
    axes = np.atleast_1d(figure.subplots(n_rows, columns, squeeze=False, sharey=True)).ravel()
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    drawn, hexes = [], None
    for ax, (title, pairs, bins) in zip(axes, panels):
        if pairs.empty:
            empty_panel(ax, "no pairs")
            continue
        # distances span orders of magnitude (neighbours to antipodes): a log axis, pairs nearer than
        # DISTANCE_FLOOR_KM drawn at it (log 0 does not exist)
        distance = np.maximum(pairs["distance_km"].to_numpy(dtype=float), DISTANCE_FLOOR_KM)
        hexes = ax.hexbin(distance, pairs["cosine"], gridsize=gridsize, cmap=COLORMAP, mincnt=1,
                          bins="log", linewidths=0.1, xscale="log")
        filled = bins[bins["count"] > 0]
        lo = np.maximum(filled["lo_km"].to_numpy(dtype=float), DISTANCE_FLOOR_KM)
        hi = np.maximum(filled["hi_km"].to_numpy(dtype=float), DISTANCE_FLOOR_KM)
        for (_, row), left, right in zip(filled.iterrows(), lo, hi):
            ax.plot([left, right], [row["cosine_mean"]] * 2, color="black", linewidth=1.8,
                    solid_capstyle="butt", gid=f"binmean:{title}:{row['lo_km']:g}-{row['hi_km']:g}")
            ax.plot([left, right], [row["cosine_mean"]] * 2, color="white", linewidth=0.7,
                    solid_capstyle="butt")
        middle = np.sqrt(lo * hi)  # the bin's centre on the log axis
        ax.errorbar(middle, filled["cosine_mean"], yerr=filled["cosine_std"], fmt="o", color="black",
                    markerfacecolor="white", markersize=3.5, elinewidth=0.8, capsize=2)
        ax.set_title(title)
        ax.set_xlabel("great-circle distance (km, log scale)")
        top = max(float(distance.max()), float(hi.max()) if len(hi) else 0.0)
        ax.set_xlim(DISTANCE_FLOOR_KM, max(top * 1.1, DISTANCE_FLOOR_KM * 10))
        drawn.append(bins.assign(panel=title))
    axes[0].set_ylabel("cosine similarity")
    if hexes is not None:
        figure.colorbar(hexes, ax=axes[:len(panels)].tolist(), label="pairs per cell (log scale)", shrink=0.8)
    data = pd.concat(drawn, ignore_index=True) if drawn else pd.DataFrame()
    n_pairs = max((len(pairs) for _, pairs, _ in panels), default=0)
    caption = (f"Cosine similarity of image embeddings against the great-circle distance between the "
               f"images (log axis; pairs nearer than {DISTANCE_FLOOR_KM:g} km drawn at {DISTANCE_FLOOR_KM:g} "
               f"km), for {n_pairs} sampled pairs per panel (hexbin, log counts). Black steps: mean "
               f"cosine per distance bin, spanning the bin; circles with whiskers: bin centre ± 1 s.d. "
               f"A falling line means nearer places look more alike to the encoder.")
    return Plot(figure, data, caption)


def ecdf(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted values, share of values <= each): the empirical CDF at its jumps."""
    x = np.sort(np.asarray(values, dtype=float))
    x = x[np.isfinite(x)]
    return x, np.arange(1, len(x) + 1) / len(x) if len(x) else np.array([])


@styled
def plot_geoscore(predictions: pd.DataFrame) -> Plot:
    """Empirical CDFs per kNN method (columns), one line per model/variant/embedding: of the per-query
    GeoScore (top row) and, where the predictions carry it, of the error in km on a log axis (bottom
    row: errors span metres to antipodes, which GeoScore's exponential squeezes into its ends)."""
    require_columns(predictions, ["model", "variant", "features", "method", "geoscore"], "kNN predictions")
    methods = sorted(predictions["method"].astype(str).unique())
    with_km = "distance_km" in predictions.columns and len(predictions) > 0
    n_rows = 2 if with_km else 1
    figure = new_figure(3.2 * max(1, len(methods)) + 1.6, 2.7 * n_rows + 0.3)
    grid = figure.subplots(n_rows, max(1, len(methods)), sharey=True, squeeze=False)
    axes = grid[0]
    if predictions.empty:
        empty_panel(axes[0], "no kNN predictions")
        return Plot(figure, pd.DataFrame(), "GeoScore: no kNN predictions.")
    keys = list(dict.fromkeys(zip(predictions["model"], predictions["variant"], predictions["features"])))
    colours = series_colours(len(keys))
    rows = []
    for column, method in enumerate(methods):
        ax = axes[column]
        own = predictions[predictions["method"] == method]
        for index, key in enumerate(keys):
            scores = own[(own["model"] == key[0]) & (own["variant"] == key[1]) & (own["features"] == key[2])]
            x, y = ecdf(scores["geoscore"].to_numpy())
            if not len(x):
                continue
            label = f"{key[0]} [{key[1]}] · {key[2]}"
            style = dict(color=colours[index], linestyle=LINESTYLES[index % len(LINESTYLES)], linewidth=1.2)
            ax.step(np.r_[0, x, GEOSCORE_MAX], np.r_[0, y, 1], where="post", label=label,
                    gid=f"ecdf:{method}:{label}", **style)
            median = float(np.median(x))
            ax.plot(median, 0.5, marker=MARKERS[index % len(MARKERS)], color=colours[index],
                    markeredgecolor="black", markersize=5)
            row = {"method": method, "model": key[0], "variant": key[1], "features": key[2],
                   "n": len(x), "mean": float(x.mean()), "median": median,
                   "q25": float(np.quantile(x, 0.25)), "q75": float(np.quantile(x, 0.75))}
            if with_km:
                km, share = ecdf(np.maximum(scores["distance_km"].to_numpy(dtype=float), DISTANCE_FLOOR_KM))
                if len(km):
                    grid[1][column].step(np.r_[km[0], km], np.r_[0, share], where="post",
                                         gid=f"ecdf_km:{method}:{label}", **style)
                    row["median_km"] = float(np.median(scores["distance_km"].dropna()))
            rows.append(row)
        ax.set_title(method)
        ax.set_xlim(0, GEOSCORE_MAX)
        ax.set_xlabel("GeoScore (points, 0–5000)")
        ax.grid(color="0.9", linewidth=0.6)
        if with_km:
            below = grid[1][column]
            below.set_xscale("log")
            below.set_xlabel("error (km, log scale)")
            below.grid(color="0.9", linewidth=0.6, which="major")
    axes[0].set_ylabel("share of queries with score ≤ x")
    if with_km:
        grid[1][0].set_ylabel("share of queries within x km")
        # one error axis for all methods, so their curves compare across panels
        lows, highs = zip(*(ax.get_xlim() for ax in grid[1]))
        for ax in grid[1]:
            ax.set_xlim(min(lows), max(highs))
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside right center", frameon=False)
    caption = ("Distribution of the per-query GeoScore (5000·exp(−d/1492.7 km), the OSV-5M score) of kNN "
               "geolocation: empirical CDF per model, variant and embedding; markers at the median. A "
               "curve further right is better."
               + (f" Bottom: the same queries' error in km on a log axis (errors under "
                  f"{DISTANCE_FLOOR_KM:g} km drawn at {DISTANCE_FLOOR_KM:g} km); a curve further left is "
                  f"better." if with_km else ""))
    return Plot(figure, pd.DataFrame(rows), caption)


@styled
def plot_gallery(groups: pd.DataFrame, gallery: pd.DataFrame) -> Plot:
    """(a) groups and images per group-size bin; (b) GeoScore of representative vs random galleries."""
    require_columns(groups, ["bin", "n_groups", "n_images"], "gallery group table")
    require_columns(gallery, ["model", "variant", "seed", "gallery", "geoscore"], "gallery table")
    figure = new_figure(7.6, 3.0)
    left, right = figure.subplots(1, 2, width_ratios=[1.1, 1])
    x = np.arange(len(groups))
    left.bar(x - 0.2, groups["n_groups"], width=0.4, color=series_colours(2)[0], edgecolor="black",
             linewidth=0.5, label="groups", gid="bar:n_groups")
    left.bar(x + 0.2, groups["n_images"], width=0.4, color="white", edgecolor="black", hatch="//",
             linewidth=0.5, label="images in them", gid="bar:n_images")
    left.set_xticks(x, groups["bin"].astype(str).tolist(), rotation=30)
    left.set_yscale("symlog", linthresh=1)  # many small groups and a few large ones; 0 stays drawable
    left.set_ylim(bottom=0)
    left.set_xlabel("group size (images per group)")
    left.set_ylabel("count (log scale above 1)")
    left.set_title("(a) gallery group sizes")
    left.legend(frameon=False)
    kinds = sorted(gallery["gallery"].astype(str).unique())
    entries = list(dict.fromkeys(zip(gallery["model"], gallery["variant"])))
    rows = []
    for index, (model, variant) in enumerate(entries):
        for k, kind in enumerate(kinds):
            own = gallery[(gallery["model"] == model) & (gallery["variant"] == variant) & (gallery["gallery"] == kind)]
            position = index + (k - (len(kinds) - 1) / 2) * 0.3
            right.scatter(np.full(len(own), position), own["geoscore"], marker=MARKERS[k % len(MARKERS)],
                          facecolor="white" if k else "black", edgecolor="black", s=18, zorder=3,
                          label=kind if index == 0 else None)
            right.plot([position - 0.1, position + 0.1], [own["geoscore"].mean()] * 2, color="black", linewidth=1.4)
            rows.append({"model": model, "variant": variant, "gallery": kind, "seeds": len(own),
                         "geoscore_mean": float(own["geoscore"].mean())})
    right.set_xticks(range(len(entries)), [f"{m} [{v}]" if v not in ("", "frozen") else m for m, v in entries],
                     rotation=20, ha="right")
    right.set_ylabel("mean GeoScore of the queries")
    right.set_title("(b) representative vs random gallery")
    right.legend(frameon=False)
    data = pd.concat([groups.assign(panel="group_sizes"), pd.DataFrame(rows).assign(panel="gallery")],
                     ignore_index=True)
    caption = ("(a) How many groups of the stratification columns (cell, land cover, climate, soil) hold "
               "how many images, and the images in them. (b) kNN GeoScore on the same held-out queries "
               "with a representative gallery (sampled across groups) and a random one of the same "
               "size; points: seeds, bars: their mean.")
    return Plot(figure, data, caption)


def cosine_distance_panels(entries: Sequence[tuple[str, str]], embedding_paths: Sequence[str],
                           bins_tables: Sequence[pd.DataFrame], manifest: pd.DataFrame, n_pairs: int,
                           seed: int, bins_km: Sequence[float]) -> list[tuple[str, pd.DataFrame, pd.DataFrame]]:
    """(title, pairs, bins) per model, variant and embedding of the geometry tables, pairs recomputed."""
    from encoderlens.geo.job import aligned_manifest, read_features

    panels = []
    for (model, variant), path, bins in zip(entries, embedding_paths, bins_tables):
        names = list(dict.fromkeys(bins["features"].astype(str)))
        ids, features = read_features(path, names)
        table = aligned_manifest(manifest, ids)
        latlon = table[["latitude", "longitude"]].to_numpy(dtype=float)
        for name in names:
            own = bins[bins["features"] == name].drop(columns="features")
            pairs = geometry_pairs(features[name], latlon, n_pairs, seed, bins_km, own, source=str(path))
            suffix = f" [{variant}]" if variant != "frozen" else ""
            panels.append((f"{model}{suffix} · {name}", pairs, own))
    return panels
