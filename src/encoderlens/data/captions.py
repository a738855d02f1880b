"""Reader for captioned-image tables (see `synthetic_captions` for a generator of the layout).

    root/captions.csv   id, caption[, entity, language, country, image, subset]
                        (or root/captions.parquet with the same columns)
    root/images/...     `image` is a path relative to root; when empty, images/<id>.jpg

Manifest: image_id (= id), path, split (the row's `subset`, or "all" without one), caption, entity,
language, country_true (the CSV's `country`, ISO alpha-2; "NA" stays Namibia). Rows whose image is
missing or does not decode, and duplicate ids, become skip records; a CSV lacking a required column
raises ValueError naming the file.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from encoderlens.data.images import image_problem
from encoderlens.data.listing import METADATA_FILES
from encoderlens.data.manifest import ManifestResult, read_csv_keep_na, require_columns, skipped_frame

REQUIRED_COLUMNS = ["id", "caption"]
OPTIONAL_COLUMNS = ["entity", "language", "country", "image", "subset"]
MANIFEST_COLUMNS = ["image_id", "path", "split", "caption", "entity", "language", "country_true"]
TABLE_NAMES = METADATA_FILES["captions"]  # the first present is read


def caption_table_path(root) -> Path:
    """The captions table of a folder: captions.csv, else captions.parquet."""
    root = Path(root)
    for name in TABLE_NAMES:
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(f"{root}: no captions table ({' or '.join(TABLE_NAMES)})")


def read_caption_file(path) -> pd.DataFrame:
    """A captions table as text columns, "" where empty, "NA" kept (Namibia); optional columns added
    as "". Raises ValueError naming the file when a required column is missing."""
    path = Path(path)
    if path.suffix == ".parquet":
        table = pd.read_parquet(path)
        table = table.astype(object).where(table.notna(), "").astype(str)
    else:
        table = read_csv_keep_na(path, dtype=str).fillna("")
    require_columns(table, REQUIRED_COLUMNS, path)
    for column in OPTIONAL_COLUMNS:
        if column not in table.columns:
            table[column] = ""
    return table


def read_captions(root, decode_images: bool = True) -> ManifestResult:
    """Manifest and skip records of a captions folder."""
    root = Path(root)
    csv_path = caption_table_path(root)
    table = read_caption_file(csv_path)

    rows, skipped, seen = [], [], set()
    for position, record in enumerate(table.to_dict("records")):
        image_id = record["id"]
        where = f"line {position + 2} (id={image_id})"  # line 1 is the header
        if image_id == "" or image_id in seen:
            skipped.append({"file": str(csv_path), "row": where,
                            "reason": "missing id" if image_id == "" else "duplicate id"})
            continue
        seen.add(image_id)
        path = root / (record.get("image") or f"images/{image_id}.jpg")
        problem = image_problem(path, decode=decode_images)
        if problem:
            skipped.append({"file": str(path), "row": where, "reason": problem})
            continue
        rows.append({"image_id": image_id, "path": str(path), "split": record.get("subset") or "all",
                     "caption": record["caption"], "entity": record["entity"],
                     "language": record["language"], "country_true": record["country"]})
    return ManifestResult(pd.DataFrame(rows, columns=MANIFEST_COLUMNS).astype(str), None,
                          skipped_frame(skipped))
