"""The pieces the readers of your own datasets share (formats `coco`, `boxes`, `images`).

- `read_table`: a CSV read as text ("NA" stays text), with errors naming the file, the line and the
  column: a file pandas cannot parse, a required column missing, a value that is not a number.
- `image_folder` / `list_images`: where a dataset's images are and which files count as images.
- `labels_table`: the optional `labels.csv` (`image, label[, group]`) that gives annotated datasets
  the image-level classes of the style task and probe: `label` becomes the manifest's `styles` and
  `style_label`, `group` its `church_id` (images of one group stay on one side of every split).
- `annotated_manifest`: the manifest of an annotated dataset in the columns the WikiChurches reader
  writes (image_id, path, split "annotated" for images with a usable box, "pool" for the others,
  church_id, styles, style_label), so alignment, per-feature analysis, fine-tuning and the style probe
  read it unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
from PIL import Image

from encoderlens.data.images import check_image
from encoderlens.data.manifest import clamp_box, empty_annotations, read_csv_keep_na

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
ANNOTATED_COLUMNS = ["image_id", "path", "split", "church_id", "styles", "style_label"]
LABELS_FILE = "labels.csv"
BOX_UNITS = ("pixels", "fraction")


def read_table(path: Path, required, numeric=(), optional_numeric=()) -> pd.DataFrame:
    """A CSV as text (empty cells ""), with `numeric` columns parsed as float.

    ValueError naming the file and line for a file pandas cannot parse, the file and the columns for
    a required column missing, and file, line and column for a `numeric` cell that is empty or not a
    number (`optional_numeric`: empty allowed, becomes NaN). Line numbers count the header as 1."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found")
    try:
        table = read_csv_keep_na(path, dtype=str, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: malformed CSV: {error}") from error
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing required columns {missing} (line 1, found {list(table.columns)})")
    table = table.fillna("")
    for column in [*numeric, *(c for c in optional_numeric if c in table.columns)]:
        text = table[column].str.strip()
        values = pd.to_numeric(text.where(text != ""), errors="coerce")
        bad = values.isna() & ((text != "") | (column in numeric))
        if bad.any():
            row = int(bad.to_numpy().nonzero()[0][0])
            raise ValueError(f"{path}: line {row + 2}, column {column!r}: {table[column].iloc[row]!r} is "
                             f"not a number")
        table[column] = values.astype(float)
    return table


def image_folder(root: Path) -> Path:
    """`root/images` when it exists, else `root` itself."""
    return root / "images" if (root / "images").is_dir() else root


def list_images(folder: Path) -> list[str]:
    """Image files under `folder` (any depth), as sorted POSIX paths relative to it."""
    found = []
    for dirpath, _, files in os.walk(folder):
        for name in files:
            if name.lower().endswith(IMAGE_SUFFIXES) and not name.startswith("."):
                found.append((Path(dirpath) / name).relative_to(folder).as_posix())
    return sorted(found)


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of the pixels as stored (the header only; no EXIF rotation)."""
    with Image.open(path) as image:
        return image.size


def labels_table(root: Path, known: set[str], skipped: list[dict]) -> dict[str, tuple[str, str]]:
    """{image name: (label, group)} from root/labels.csv where present ({} where not). A row for an
    image the dataset lacks, a repeated image or an empty label is a skip record."""
    path = root / LABELS_FILE
    if not path.is_file():
        return {}
    table = read_table(path, ["image", "label"])
    labels = {}
    groups = table["group"] if "group" in table.columns else [""] * len(table)
    for position, (image, label, group) in enumerate(zip(table["image"], table["label"], groups)):
        where = f"line {position + 2} (image={image})"
        image, label, group = image.strip(), label.strip(), str(group).strip()
        reason = None
        if image not in known:
            reason = f"no image {image!r} in the dataset's image folder"
        elif image in labels:
            reason = f"duplicate row for image {image!r}"
        elif not label:
            reason = "empty label"
        if reason:
            skipped.append({"file": str(path), "row": where, "reason": reason})
            continue
        labels[image] = (label, group)
    return labels


def usable_images(folder: Path, names, skipped: list[dict], decode_images: bool = True) -> dict[str, str]:
    """{name: image_id} of the images that decode, in the order given; image_id is the file name's
    stem. A missing or undecodable image, or one repeating another's stem, is a skip record."""
    kept, ids = {}, set()
    for name in names:
        path = folder / name
        problem = check_image(path, decode=decode_images).problem
        stem = Path(name).stem
        if not problem and stem in ids:
            problem = f"duplicate image_id {stem} (file names must differ in their stem)"
        if problem:
            skipped.append({"file": str(path), "row": name, "reason": problem})
            continue
        ids.add(stem)
        kept[name] = stem
    return kept


def annotated_manifest(folder: Path, kept: dict[str, str], annotated: set[str], labels: dict) -> pd.DataFrame:
    """The manifest in ANNOTATED_COLUMNS of the `kept` images (`usable_images`)."""
    rows = []
    for name, stem in kept.items():
        label, group = labels.get(name, ("", ""))
        rows.append({"image_id": stem, "path": str(folder / name),
                     "split": "annotated" if name in annotated else "pool",
                     "church_id": group or stem, "styles": label, "style_label": label})
    return pd.DataFrame(rows, columns=ANNOTATED_COLUMNS).astype(str)


def annotations_frame(boxes: list[dict]) -> pd.DataFrame:
    """The annotations table of the contract from box rows (image_id, box_id, feature, left, top,
    width, height, clamped)."""
    empty = empty_annotations()
    table = pd.DataFrame(boxes, columns=empty.columns) if boxes else empty
    return table.astype(empty.dtypes.to_dict())


def fraction_box(left, top, width, height, size, units: str):
    """`clamp_box` of a box given in `units` ("pixels": divided by the image's (width, height);
    "fraction": as is)."""
    if units == "pixels":
        w, h = size
        left, top, width, height = left / w, top / h, width / w, height / h
    elif units != "fraction":
        raise ValueError(f"box units {units!r}: use one of {list(BOX_UNITS)}")
    return clamp_box(float(left), float(top), float(width), float(height))
