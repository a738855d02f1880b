"""Caption geo-profiling figure: where the images of each entity come from, per continent.

Input: the caption study's `distributions.parquet` (`entity` ("all" for combined), `level`
(country|continent), `place`, `count`, `share`). One heatmap row per entity ("all" first), one
column per continent ordered by the combined share, "Unknown" last; each cell the entity's share of
its captions placed on that continent, in percent.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .figures import COLORMAP, Plot, empty_panel, new_figure, require_columns, styled, text_colour_on

ALL = "all"
UNKNOWN = "Unknown"


def continent_matrix(distributions: pd.DataFrame) -> tuple[np.ndarray, list[str], list[str], pd.Series]:
    """(entities × continents share matrix in percent, entities, continents, captions per entity)."""
    require_columns(distributions, ["entity", "level", "place", "count", "share"], "caption distributions")
    rows = distributions[distributions["level"] == "continent"].copy()
    rows["entity"] = rows["entity"].astype(str)
    rows["place"] = rows["place"].astype(str)
    pivot = rows.pivot_table(index="entity", columns="place", values="share", aggfunc="sum", fill_value=0.0)
    totals = rows.groupby("entity")["count"].sum()
    entities = ([ALL] if ALL in pivot.index else []) + sorted(e for e in pivot.index if e != ALL)
    reference = pivot.loc[ALL] if ALL in pivot.index else pivot.mean(axis=0)
    known = [p for p in reference.sort_values(ascending=False, kind="stable").index if p != UNKNOWN]
    continents = known + ([UNKNOWN] if UNKNOWN in pivot.columns else [])
    matrix = 100 * pivot.loc[entities, continents].to_numpy(dtype=float)
    return matrix, entities, continents, totals.loc[entities]


@styled
def plot_caption_continents(distributions: pd.DataFrame) -> Plot:
    """Heatmap of each entity's share of captions per continent (percent, annotated)."""
    matrix, entities, continents, totals = continent_matrix(distributions)
    figure = new_figure(1.6 + 0.75 * max(1, len(continents)), 1.1 + 0.3 * max(1, len(entities)))
    ax = figure.subplots()
    if matrix.size == 0:
        empty_panel(ax, "no caption could be placed")
        return Plot(figure, pd.DataFrame(), "Caption distributions: no caption could be placed.")
    image = ax.imshow(matrix, cmap=COLORMAP, vmin=0, vmax=100, aspect="auto", interpolation="nearest",
                      gid="heatmap:continents")
    for (row, column), value in np.ndenumerate(matrix):
        ax.text(column, row, f"{value:.0f}", ha="center", va="center", fontsize=7,
                color=text_colour_on(value, 0, 100))
    ax.set_xticks(range(len(continents)), continents, rotation=30, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(len(entities)), [f"{e} (n={int(totals[e])})" for e in entities])
    if ALL in entities:
        ax.axhline(0.5, color="white", linewidth=2)
    ax.set_xlabel("continent of the predicted country")
    figure.colorbar(image, ax=ax, label="share of the entity's captions (%)")
    data = pd.DataFrame(matrix, index=pd.Index(entities, name="entity"), columns=continents).reset_index()
    caption = ("Where the captions' images come from: for each entity (and all captions, top row), the "
               "percentage of its captions whose predicted country lies on each continent; n: captions "
               "per entity; Unknown: no place could be predicted.")
    return Plot(figure, data, caption)
