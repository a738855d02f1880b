"""Reader for OSV-5M (OpenStreetView-5M), real or synthetic.

Expected layout, as the dataset ships it once its zips are unpacked:

    root/<split>.csv                   one row per image, OSV-5M's 26 columns
    root/images/<split>/<folder>/<id>.jpg   (folders 00, 01, ...; any depth is searched)

The manifest keeps every CSV column under its own name (`country`, `region`, `sub-region`, `city`,
`latitude`, `longitude`, `cell`, `land_cover`, `climate`, `soil`, ...) after image_id (= id, as a
string), path and split. Text is read with keep_default_na=False: "NA" stays Namibia and an empty
sub-region stays "". Rows without coordinates, duplicate ids and missing or undecodable images
become skip records; a CSV lacking a required column raises ValueError naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from encoderlens.data.images import image_problem
from encoderlens.data.manifest import ManifestResult, read_csv_keep_na, require_columns, skipped_frame

REQUIRED_COLUMNS = ["id", "latitude", "longitude", "country", "region", "sub-region", "city",
                    "cell", "land_cover", "climate", "soil", "drive_side"]
TEXT_COLUMNS = ["id", "thumb_original_url", "country", "sequence", "region", "sub-region", "city",
                "unique_city", "unique_sub-region", "unique_region", "unique_country",
                "creator_username"]


def _image_index(folder: Path) -> dict[str, Path]:
    """Map image stem -> path for every .jpg under `folder`, whatever the sub-folder layout."""
    index = {}
    for dirpath, _, files in os.walk(folder):
        for name in files:
            stem, ext = os.path.splitext(name)
            if ext.lower() in (".jpg", ".jpeg"):
                index.setdefault(stem, Path(dirpath) / name)
    return index


def read_osv5m(root, split: str = "test", decode_images: bool = True) -> ManifestResult:
    """Manifest and skip records of one OSV-5M split (no annotations: OSV-5M has no boxes)."""
    root = Path(root)
    csv_path = root / f"{split}.csv"
    if not csv_path.is_file():
        raise FileNotFoundError(f"{csv_path}: not found (expected OSV-5M's {split}.csv)")
    header = read_csv_keep_na(csv_path, nrows=0)
    require_columns(header, REQUIRED_COLUMNS, csv_path)
    text = {c: str for c in TEXT_COLUMNS if c in header.columns}
    table = read_csv_keep_na(csv_path, dtype=text)
    for column in text:
        table[column] = table[column].fillna("")  # empty text is "", not NaN
    for column in ("latitude", "longitude"):
        table[column] = pd.to_numeric(table[column], errors="coerce")

    image_folder = root / "images" / split
    index = _image_index(image_folder)
    keep, paths, skipped, seen = [], [], [], set()
    for position, (image_id, lat, lon) in enumerate(zip(table["id"], table["latitude"], table["longitude"])):
        where = f"line {position + 2} (id={image_id})"  # line 1 is the header
        if image_id == "" or image_id in seen:
            skipped.append({"file": str(csv_path), "row": where,
                            "reason": "missing id" if image_id == "" else "duplicate id"})
            continue
        seen.add(image_id)
        if pd.isna(lat) or pd.isna(lon):
            skipped.append({"file": str(csv_path), "row": where, "reason": "missing latitude/longitude"})
            continue
        path = index.get(image_id)
        problem = image_problem(path, decode=decode_images) if path else "missing image file"
        if problem:
            shown = path if path else image_folder / "*" / f"{image_id}.jpg"
            skipped.append({"file": str(shown), "row": where, "reason": problem})
            continue
        keep.append(position)
        paths.append(str(path))

    kept = table.iloc[keep].reset_index(drop=True)
    manifest = pd.concat([pd.DataFrame({"image_id": kept["id"].astype(str), "path": paths,
                                        "split": split}), kept], axis=1)
    return ManifestResult(manifest, None, skipped_frame(skipped))
