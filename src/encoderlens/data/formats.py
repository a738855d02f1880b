"""Dispatch by dataset format: the synthetic writer and the reader of each on-disk layout."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from encoderlens.data.boxes import read_boxes
from encoderlens.data.captions import read_captions
from encoderlens.data.coco import read_coco
from encoderlens.data.geotagged import read_images
from encoderlens.data.images import PIXEL_COLUMNS, add_pixel_columns, remembered_checks
from encoderlens.data.manifest import ManifestResult
from encoderlens.data.osv5m import read_osv5m
from encoderlens.data.local_layout import FORMAT_OPTIONS
from encoderlens.data.synthetic_captions import write_synthetic_captions
from encoderlens.data.synthetic_churches import write_synthetic_churches
from encoderlens.data.synthetic_custom import write_synthetic_boxes, write_synthetic_coco, write_synthetic_images
from encoderlens.data.synthetic_streets import write_synthetic_streets
from encoderlens.data.wikichurches import read_wikichurches

READERS = {"wikichurches": read_wikichurches, "osv5m": read_osv5m, "captions": read_captions,
           "coco": read_coco, "boxes": read_boxes, "images": read_images}
SYNTHETIC_WRITERS = {
    "wikichurches": write_synthetic_churches,
    "osv5m": write_synthetic_streets,
    "captions": write_synthetic_captions,
    "coco": write_synthetic_coco,
    "boxes": write_synthetic_boxes,
    "images": write_synthetic_images,
}


def _lookup(table: dict, dataset_format: str, what: str):
    if dataset_format not in table:
        raise ValueError(f"no {what} for dataset format {dataset_format!r}; known: {sorted(table)}")
    return table[dataset_format]


def read_dataset(dataset_format: str, root: str | Path, **options) -> ManifestResult:
    """The format's reader with its options (config keys of `FORMAT_OPTIONS`, and `admin_table` for
    the images format), then the pixel columns (EXIF orientation, mode, 8-bit conversion) on any
    manifest whose reader does not write them, from the checks the reader made."""
    reader = _lookup(READERS, dataset_format, "reader")
    allowed = set(FORMAT_OPTIONS.get(dataset_format, ())) | ({"admin_table"} if dataset_format == "images" else set())
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(f"dataset format {dataset_format!r} takes no option(s) {unknown}; its options: "
                         f"{sorted(allowed)}")
    with remembered_checks() as checks:
        result = reader(root, **options)
    if not set(PIXEL_COLUMNS) <= set(result.manifest.columns):
        result.manifest = add_pixel_columns(result.manifest, checks)
    return result


def write_synthetic_dataset(dataset_format: str, root: str | Path, **settings) -> None:
    """Generate into a temporary sibling folder, then rename: no half-written dataset folder."""
    writer = _lookup(SYNTHETIC_WRITERS, dataset_format, "synthetic generator")
    root = Path(root)
    temporary = root.with_name(root.name + ".tmp")
    shutil.rmtree(temporary, ignore_errors=True)
    writer(temporary, **settings)
    if root.exists():
        shutil.rmtree(root)
    os.replace(temporary, root)
