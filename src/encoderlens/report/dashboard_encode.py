"""Compact text encodings for the dashboard's data files.

The dashboard is a static site opened from `file://`, where fetch() of local files is blocked; its data
therefore travels as JavaScript files that call a registration function, and binary arrays travel as
text inside them. Base85 (RFC 1924 alphabet, Python's `base64.b85encode`) costs 5 characters per 4
bytes, against 4 per 3 for base64, and its alphabet has no quote or backslash, so an encoded string
needs no escaping inside a JavaScript string literal. `dashboard_assets/app.js` decodes it.

Attention maps are quantised to uint8 per map with an affine scale (`lo + q / 255 * (hi - lo)`), as
the heatmap is a display of the map, never a source of scores: the scores shown are read from the
alignment tables. Scores travel as uint16 fixed-point numbers holding exactly the 4-decimal rounding
of the table's value (as Python's `format(value, ".4f")` prints it), so the page shows the table's
own rounding and `MISSING` marks NaN.
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import numpy as np
import pandas as pd

LEVELS = 255
SCORE_DECIMALS = 4
SCORE_SCALE = 10 ** SCORE_DECIMALS
MISSING = 65535


_ALPHABET = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                          b"!#$%&()*+-;<=>?@^_`{|}~", dtype=np.uint8)


def b85(data: bytes | np.ndarray) -> str:
    """Base85 text of `data`, zero-padded to a multiple of 4 bytes (the reader knows the length).

    The same characters as `base64.b85encode` of the padded bytes, computed with numpy (the
    standard library's encoder is pure Python and dominated the build at the preset's size).
    """
    raw = data.tobytes() if isinstance(data, np.ndarray) else bytes(data)
    raw += b"\0" * (-len(raw) % 4)
    words = np.frombuffer(raw, dtype=">u4").astype(np.int64)
    digits = np.empty((len(words), 5), dtype=np.int64)
    for position in range(4, -1, -1):
        words, digits[:, position] = np.divmod(words, 85)
    return _ALPHABET[digits].tobytes().decode("ascii")


def b85_decode(text: str, length: int) -> bytes:
    """Inverse of `b85` for `length` bytes (the Python twin of the page's decoder, for tests)."""
    return base64.b85decode(text.encode("ascii"))[:length]


def quantise_maps(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(V, gh, gw) float maps -> (uint8 codes (V, gh, gw), float32 ranges (V, 2) = lo, hi).

    A map with a non-finite value gets NaN range and zero codes: the page shows it as unscorable.
    A constant map gets lo == hi and zero codes.
    """
    maps = np.asarray(maps, dtype=np.float64)
    flat = maps.reshape(len(maps), -1)
    finite = np.isfinite(flat).all(axis=1)
    lo = np.where(finite, np.nanmin(np.where(np.isfinite(flat), flat, np.inf), axis=1), np.nan)
    hi = np.where(finite, np.nanmax(np.where(np.isfinite(flat), flat, -np.inf), axis=1), np.nan)
    span = np.where(finite & (hi > lo), hi - lo, 1.0)
    scaled = (flat - np.where(finite, lo, 0.0)[:, None]) / span[:, None] * LEVELS
    codes = np.where(finite[:, None], np.clip(np.rint(np.nan_to_num(scaled)), 0, LEVELS), 0)
    ranges = np.stack([lo, hi], axis=1).astype(np.float32)
    return codes.astype(np.uint8).reshape(maps.shape), ranges


def dequantise_maps(codes: np.ndarray, ranges: np.ndarray) -> np.ndarray:
    """Inverse of `quantise_maps` up to half a level of each map's range."""
    lo, hi = ranges[:, 0].astype(np.float64), ranges[:, 1].astype(np.float64)
    shape = (-1,) + (1,) * (codes.ndim - 1)
    return lo.reshape(shape) + codes.astype(np.float64) / LEVELS * (hi - lo).reshape(shape)


def score_codes(values) -> np.ndarray:
    """Scores in [0, 6.5535) -> uint16 holding the 4-decimal rounding that `.4f` prints; NaN -> MISSING.

    rint(value * 10^4) equals the correctly rounded decimal except within float rounding of a half
    step, so those few values are rounded by `format` itself.
    """
    values = np.asarray(values, dtype=np.float64)
    missing = np.isnan(values)
    finite = values[~missing]
    if finite.size and (finite.min() < 0 or finite.max() >= MISSING / SCORE_SCALE):
        raise ValueError(f"scores must lie in [0, {(MISSING - 1) / SCORE_SCALE}], got "
                         f"{finite.min()!r} .. {finite.max()!r}")
    scaled = np.where(missing, 0.0, values) * SCORE_SCALE
    codes = np.rint(scaled)
    near_half = np.flatnonzero(~missing & (np.abs(scaled - np.floor(scaled) - 0.5) < 1e-6))
    for i in near_half:
        codes[i] = int(format(values[i], f".{SCORE_DECIMALS}f").replace(".", ""))
    codes[missing] = MISSING
    return codes.astype(np.uint16)


def format_score(code: int) -> str:
    """How the page prints a score code (the Python twin of app.js `formatScore`)."""
    if code == MISSING:
        return "n/a"
    whole, fraction = divmod(int(code), SCORE_SCALE)
    return f"{whole}.{fraction:0{SCORE_DECIMALS}d}"


def columns(frame, decimals: int = 6) -> dict[str, Any]:
    """A table as compact JSON-ready columns: strings as {levels, codes}, numbers rounded, NaN -> null."""
    out: dict[str, Any] = {}
    for name in frame.columns:
        series = frame[name]
        if series.dtype.kind in "biu":
            out[name] = series.astype(np.int64).tolist()
        elif series.dtype.kind == "f":
            values = np.round(series.to_numpy(dtype=np.float64), decimals)
            out[name] = np.where(np.isnan(values), None, values.astype(object)).tolist()
        else:
            text = series.astype(object).where(series.notna(), "").astype(str)
            codes, levels = pd.factorize(text, sort=True)
            out[name] = {"levels": [str(level) for level in levels], "codes": codes.tolist()}
    return {"n": int(len(frame)), "columns": out}


def js_call(function: str, *arguments: Any) -> str:
    """`encoderlens.<function>(<json args>);` — a data file the page loads with a <script> tag."""
    body = ", ".join(json.dumps(argument, separators=(",", ":"), allow_nan=False)
                     for argument in arguments)
    return f"encoderlens.{function}({body});\n"
