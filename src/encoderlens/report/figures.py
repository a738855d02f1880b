"""What every figure shares: the result of a plotting function, the grayscale-safe style, and saving.

A plotting function returns a `Plot`: the matplotlib figure, the numbers it draws (one row per mark,
written beside the figure as CSV so a reader can check or replot them) and a caption that states
the settings and sample sizes behind it.

Figures are built with `matplotlib.figure.Figure` directly, never through pyplot, so no global state
leaks between figures and no display backend is needed. Series are told apart by marker, line style
and hatch as well as by colour, and colours come from cividis (perceptually uniform, lightness
monotone), so a figure stays readable when printed in grayscale.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from encoderlens.tables import write_table

COLORMAP = "cividis"
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p")
LINESTYLES = ("-", "--", "-.", ":")
HATCHES = ("", "//", "..", "xx", "\\\\", "++", "oo", "--", "||", "**")
BASELINE_GREY = "0.55"

STYLE = {
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "hatch.linewidth": 0.6,
    "svg.hashsalt": "encoderlens",  # stable element ids: the same figure gives the same SVG
    "svg.fonttype": "none",          # text stays text in the SVG, editable for publication
}


@dataclass
class Plot:
    figure: Figure
    data: pd.DataFrame
    caption: str


def new_figure(width: float, height: float) -> Figure:
    with matplotlib.rc_context(STYLE):
        return Figure(figsize=(width, height), layout="constrained")


def styled(function):
    """Run a plotting function under STYLE, so rcParams it reads (fonts, hatch width) apply."""
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(STYLE):
            return function(*args, **kwargs)
    wrapper.__name__, wrapper.__doc__ = function.__name__, function.__doc__
    wrapper.__wrapped__ = function
    return wrapper


def series_colours(count: int) -> list:
    """`count` cividis colours of evenly spaced lightness (dark to light, the lightest kept off white)."""
    cmap = matplotlib.colormaps[COLORMAP]
    if count <= 1:
        return [cmap(0.15)]
    return [cmap(x) for x in np.linspace(0.05, 0.85, count)]


def text_colour_on(value: float, vmin: float, vmax: float) -> str:
    """Black on the light end of cividis, white on the dark end."""
    span = vmax - vmin
    share = 0.5 if not np.isfinite(value) or span <= 0 else (value - vmin) / span
    return "black" if share > 0.55 else "white"


def empty_panel(ax, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="0.3")
    ax.set_xticks([])
    ax.set_yticks([])


def save_plot(plot: Plot, png, svg, data=None, caption=None, dpi: int = 150) -> None:
    """Write the figure as PNG and SVG (and its numbers and caption), each atomically."""
    with matplotlib.rc_context(STYLE):
        _save_figure(plot.figure, Path(png), "png", dpi, {"Software": None})
        _save_figure(plot.figure, Path(svg), "svg", dpi, {"Date": None})
    if data is not None:
        write_table(plot.data, data)
    if caption is not None:
        _write_text(Path(caption), plot.caption.strip() + "\n")


def _save_figure(figure: Figure, path: Path, fmt: str, dpi: int, metadata: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        figure.savefig(tmp, format=fmt, dpi=dpi, metadata=metadata)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def reference_threshold(thresholds, chosen: float | None = None) -> float:
    """The threshold single-threshold figures use: `chosen`, else the middle configured one."""
    values = sorted(float(t) for t in thresholds)
    if not values:
        raise ValueError("no attention-mass thresholds configured")
    if chosen is None:
        return values[(len(values) - 1) // 2]
    if float(chosen) not in values:
        raise ValueError(f"figures.threshold {chosen} is not one of alignment.thresholds {values}")
    return float(chosen)


def require_columns(table: pd.DataFrame, columns, source: str) -> None:
    missing = [column for column in columns if column not in table.columns]
    if missing:
        raise ValueError(f"{source}: missing columns {missing} (has {list(table.columns)})")
