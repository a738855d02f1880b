"""The manifest contract shared by every dataset reader, and its atomic writer.

A reader returns a `ManifestResult`: one manifest row per usable image, the expert boxes of annotated
datasets, and one `skipped` record per image or box it had to leave out (so nothing disappears
silently). Manifest columns start with `image_id`, `path`, `split`; each dataset appends its labels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from encoderlens.tables import write_table

MANIFEST_COLUMNS = ["image_id", "path", "split"]
ANNOTATION_COLUMNS = ["image_id", "box_id", "feature", "left", "top", "width", "height", "clamped"]
SKIPPED_COLUMNS = ["file", "row", "reason"]


def empty_annotations() -> pd.DataFrame:
    """An annotations table with no rows but the contract's columns and dtypes."""
    return pd.DataFrame({
        "image_id": pd.Series(dtype=str), "box_id": pd.Series(dtype="int64"),
        "feature": pd.Series(dtype=str), "left": pd.Series(dtype="float64"),
        "top": pd.Series(dtype="float64"), "width": pd.Series(dtype="float64"),
        "height": pd.Series(dtype="float64"), "clamped": pd.Series(dtype=bool),
    })


def clamp_box(left: float, top: float, width: float, height: float):
    """(left, top, width, height, clamped) of a box in fractions of its image, the part inside the
    image kept where it overhangs an edge (clamped True); (None, reason) for a box with zero or
    negative extent or entirely outside the image. Every annotated reader scores boxes this way."""
    if width <= 0 or height <= 0:
        return None, f"zero-area box (width={width}, height={height})"
    right, bottom = left + width, top + height
    if left >= 1 or top >= 1 or right <= 0 or bottom <= 0:
        return None, f"box outside the image (left={left}, top={top}, width={width}, height={height})"
    c_left, c_top = max(left, 0.0), max(top, 0.0)
    c_right, c_bottom = min(right, 1.0), min(bottom, 1.0)
    clamped = (c_left, c_top, c_right, c_bottom) != (left, top, right, bottom)
    return (c_left, c_top, c_right - c_left if clamped else width,
            c_bottom - c_top if clamped else height, clamped), None


def skipped_frame(records: list[dict] | None = None) -> pd.DataFrame:
    """Skip records as a table; `row` is always a string ("" when a whole file is meant)."""
    frame = pd.DataFrame(records or [], columns=SKIPPED_COLUMNS)
    return frame.astype({"file": str, "row": str, "reason": str})


@dataclass
class ManifestResult:
    manifest: pd.DataFrame
    annotations: pd.DataFrame | None = None
    skipped: pd.DataFrame = field(default_factory=skipped_frame)


def read_csv_keep_na(path, **kw) -> pd.DataFrame:
    """`pd.read_csv` that keeps the string "NA" (Namibia's ISO code) instead of turning it into NaN.

    Only truly empty fields become NaN; callers that need "" for empty text fill it themselves.
    """
    kw.setdefault("keep_default_na", False)
    kw.setdefault("na_values", [""])
    return pd.read_csv(path, **kw)


def require_columns(table: pd.DataFrame, required, source) -> None:
    """Raise ValueError naming `source` and every required column it lacks."""
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise ValueError(f"{source}: missing required columns {missing} "
                         f"(found {list(table.columns)})")


def check_manifest(manifest: pd.DataFrame, source: str = "manifest") -> None:
    """Raise ValueError if the manifest breaks the contract (missing columns, duplicate ids)."""
    missing = [c for c in MANIFEST_COLUMNS if c not in manifest.columns]
    if missing:
        raise ValueError(f"{source}: manifest lacks required columns {missing}")
    duplicated = manifest["image_id"][manifest["image_id"].duplicated()]
    if len(duplicated):
        raise ValueError(f"{source}: duplicate image_id values {sorted(set(duplicated))[:5]}")


def write_manifest_outputs(result: ManifestResult, manifest_path, annotations_path=None,
                           skipped_path=None) -> None:
    """Write the manifest, and where paths are given the annotations and skip records.

    Datasets without boxes still get an (empty) annotations table when a path is given, so the
    workflow can declare the same outputs for every dataset.
    """
    check_manifest(result.manifest, str(manifest_path))
    write_table(result.manifest.reset_index(drop=True), manifest_path)
    if annotations_path is not None:
        annotations = result.annotations if result.annotations is not None else empty_annotations()
        write_table(annotations.reset_index(drop=True), annotations_path)
    if skipped_path is not None:
        write_table(skipped_frame(result.skipped.to_dict("records")), skipped_path)
