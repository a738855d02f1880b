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


def every_caption_distribution(predictions: pd.DataFrame, continent_scheme: str = "Continent_7") -> pd.DataFrame:
    """The distribution rows (entity "all") over every caption once: those naming no entity and those
    whose country is Unknown included. (The caption study's own "all" pools the captions that name an
    entity.) Counted by the study's own `distributions`, so the shares are the study's."""
    from encoderlens.captions.profile import distributions

    captions = predictions.drop_duplicates("image_id").assign(entity=ALL)
    table = distributions(captions, continent_scheme)
    return table[table["entity"] == ALL].reset_index(drop=True)


@styled
def plot_caption_continents(distributions: pd.DataFrame, every_caption: pd.DataFrame | None = None) -> Plot:
    """Heatmap of each entity's share of captions per continent (percent, annotated); the top row, when
    `every_caption` is given (`every_caption_distribution`), counts every caption."""
    if every_caption is not None:
        distributions = pd.concat([every_caption, distributions[distributions["entity"].astype(str) != ALL]],
                                  ignore_index=True)
    matrix, entities, continents, totals = continent_matrix(distributions)
    # tall enough for the colour bar's label whatever the number of entities
    figure = new_figure(2.0 + 0.75 * max(1, len(continents)), max(2.6, 1.1 + 0.3 * max(1, len(entities))))
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
    names = {ALL: "all captions" if every_caption is not None else "all (naming an entity)"}
    ax.set_yticks(range(len(entities)), [f"{names.get(e, e)} (n={int(totals[e])})" for e in entities])
    if ALL in entities:
        ax.axhline(0.5, color="white", linewidth=2)
    ax.set_xlabel("continent of the predicted country")
    figure.colorbar(image, ax=ax, label="captions (%)")
    data = pd.DataFrame(matrix, index=pd.Index(entities, name="entity"), columns=continents).reset_index()
    top = ("every caption, including those naming no entity" if every_caption is not None
           else "the captions naming an entity")
    caption = (f"Where the captions' images come from: for each entity (top row: {top}), the percentage "
               f"of its captions whose predicted country lies on each continent (each row sums to 100%); "
               f"n: captions per row; Unknown: no place could be predicted, counted in n.")
    return Plot(figure, data, caption)
