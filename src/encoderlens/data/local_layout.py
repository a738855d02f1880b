"""Whether a local dataset's own files are in place, asked when the workflow is planned.

Standard library only: the workflow calls this at every start. The caption table's names and
columns are defined here and used by the caption reader (encoderlens.data.captions).
"""

from __future__ import annotations

from pathlib import Path

CAPTION_TABLE_NAMES = ("captions.csv", "captions.parquet")
CAPTION_REQUIRED_COLUMNS = ["id", "caption"]
CAPTION_OPTIONAL_COLUMNS = ["entity", "language", "country", "image", "subset"]
COCO_ANNOTATIONS_FILE = "annotations.json"  # the coco format's default instances file
IMAGES_METADATA_FILE = "metadata.csv"  # the images format's coordinates and attributes
# the dataset config keys each format's reader (and synthetic writer) takes, beyond its folder
FORMAT_OPTIONS = {"coco": ("annotations_file",), "boxes": ("box_units",), "images": ("coordinates",)}


def format_options(entry: dict) -> dict:
    """The reader options of a dataset's config entry (`FORMAT_OPTIONS`; {} for the other formats)."""
    return {key: entry[key] for key in FORMAT_OPTIONS.get(entry["format"], ()) if key in entry}


def caption_table_help(root) -> str:
    """Where a caption table goes and what it holds."""
    root = Path(root)
    return (f"put your caption table at {root / CAPTION_TABLE_NAMES[0]} (or {CAPTION_TABLE_NAMES[1]}) with the "
            f"columns {', '.join(CAPTION_REQUIRED_COLUMNS)} (required) and "
            f"{', '.join(CAPTION_OPTIONAL_COLUMNS)} (optional; the per-entity tables read `entity`, the "
            f"evaluation `country`, an ISO alpha-2 code), the images beside it (`image` is a path "
            f"relative to {root}; empty means images/<id>.jpg), or point the dataset's `path` at the folder "
            f"that holds it")


def local_dataset_problem(name: str, dataset_format: str, path, options: dict | None = None) -> str | None:
    """Why the local dataset `name` cannot be read from `path`, with what to do about it; None if its
    files are there (a caption dataset needs its table, an images dataset with coordinates its
    metadata.csv, any other format its folder). `options`: the entry's `format_options`."""
    root = Path(path)
    options = options or {}
    if dataset_format == "images" and options.get("coordinates", True) and root.is_dir() \
            and not (root / IMAGES_METADATA_FILE).is_file():
        return (f"datasets.{name}: no {IMAGES_METADATA_FILE} in {root}/; the street-view studies need the columns "
                "image, latitude, longitude (the README's \"Your own images, boxes and models\"), or set "
                "coordinates: false to run only the studies that need none")
    if dataset_format == "captions":
        if any((root / table).is_file() for table in CAPTION_TABLE_NAMES):
            return None
        return f"datasets.{name}: no caption table in {root}/; {caption_table_help(root)}"
    if root.is_dir():
        return None
    return f"datasets.{name}: the folder {root}/ does not exist; put the {dataset_format} dataset there or set `path`"
