"""Reader for captioned-image tables (see `synthetic_captions` for a generator of the layout).

    root/captions.csv   id, caption, entity, language, country, image[, subset]
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
from encoderlens.data.manifest import ManifestResult, read_csv_keep_na, require_columns, skipped_frame

REQUIRED_COLUMNS = ["id", "caption", "entity", "language", "country"]
MANIFEST_COLUMNS = ["image_id", "path", "split", "caption", "entity", "language", "country_true"]


def read_captions(root, decode_images: bool = True) -> ManifestResult:
    """Manifest and skip records of a captions folder."""
    root = Path(root)
    csv_path = root / "captions.csv"
    if not csv_path.is_file():
        raise FileNotFoundError(f"{csv_path}: not found (expected a captions table)")
    table = read_csv_keep_na(csv_path, dtype=str).fillna("")  # every column is text here
    require_columns(table, REQUIRED_COLUMNS, csv_path)

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
