"""Reader for the `boxes` format: your own images with boxes in a CSV.

    root/images/<file>                 any depth; the image's name is its path relative to images/
    root/boxes.csv                     image, left, top, width, height, label (one row per box)
    root/labels.csv                    optional: image, label[, group] (image-level classes)

Coordinates are in the units the config declares (`box_units`): `pixels` of the image as stored (no
EXIF rotation, see `encoderlens.data.images`), or `fraction`s of its width and height. The
annotations table holds fractions, clamped to the image like WikiChurches' (`clamped` marks a box cut
at an edge). `label` is the box's feature type (the per-feature analysis groups by it).

Manifest: every image under images/ in the WikiChurches reader's columns (`encoderlens.data.custom`):
split "annotated" for an image with a usable box, "pool" for the others; labels.csv's `label` as
`styles`/`style_label`, its `group` (default: the image itself) as `church_id`.

Skip records: a row naming an image images/ lacks, a duplicate row (same image, box and label), a box
of zero extent, entirely outside its image or with a coordinate that is not finite, an empty label,
a box of an image that was itself skipped, an image whose rows left no usable box; images that are
missing, do not decode or repeat another's stem. Errors naming the file (and line and column): a
missing images/ folder or boxes.csv, a missing column, a coordinate that is not a number.
"""

from __future__ import annotations

import math
from pathlib import Path

from encoderlens.data.custom import (BOX_UNITS, annotated_manifest, annotations_frame, fraction_box,
                                     image_size, labels_table, list_images, read_table, usable_images)
from encoderlens.data.manifest import ManifestResult, skipped_frame

BOXES_FILE = "boxes.csv"
COORDINATES = ("left", "top", "width", "height")
BOX_COLUMNS = ["image", *COORDINATES, "label"]


def read_boxes(root, box_units: str | None = None, decode_images: bool = True) -> ManifestResult:
    """Manifest, annotations and skip records of a `boxes` folder; `box_units`: pixels or fraction."""
    root = Path(root)
    if box_units not in BOX_UNITS:
        raise ValueError(f"{root}: the boxes format needs box_units (pixels or fraction) to read "
                         f"{BOXES_FILE}, not {box_units!r}; set datasets.<name>.box_units")
    folder = root / "images"
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not found (the boxes format keeps its images in images/)")
    boxes_path = root / BOXES_FILE
    table = read_table(boxes_path, BOX_COLUMNS, numeric=COORDINATES)
    names = list_images(folder)
    skipped: list[dict] = []
    kept = usable_images(folder, names, skipped, decode_images)
    labels = labels_table(root, set(names), skipped)

    boxes, seen, counts, usable, sizes = [], {}, {}, {}, {}
    for position, values in enumerate(zip(*(table[c] for c in BOX_COLUMNS))):
        image, left, top, width, height, label = values
        image, label = image.strip(), label.strip()
        line, where = position + 2, f"line {position + 2} (image={image})"
        box_id = counts.get(image, 0)  # the row's position among its image's rows, skipped ones counted
        counts[image] = box_id + 1
        key = (image, left, top, width, height, label)
        reason = None
        if image not in kept:
            reason = (f"no image {image!r} in {folder}" if image not in names
                      else "its image was skipped (see the image's own record)")
        elif key in seen:
            reason = f"duplicate of line {seen[key]}"
        elif not label:
            reason = "empty label"
        elif not all(math.isfinite(v) for v in (left, top, width, height)):
            reason = f"coordinates ({left}, {top}, {width}, {height}) are not all finite"
        seen.setdefault(key, line)
        box = None
        if reason is None:
            if box_units == "pixels" and image not in sizes:
                sizes[image] = image_size(folder / image)
            box, reason = fraction_box(left, top, width, height, sizes.get(image), box_units)
        if reason:
            skipped.append({"file": str(boxes_path), "row": where, "reason": reason})
            continue
        usable[image] = usable.get(image, 0) + 1
        boxes.append({"image_id": kept[image], "box_id": box_id, "feature": label,
                      **dict(zip((*COORDINATES, "clamped"), box))})
    for image, count in counts.items():
        if image in kept and not usable.get(image):
            skipped.append({"file": str(boxes_path), "row": image,
                            "reason": f"image left with no usable box ({count} skipped): it takes no "
                                      "part in scoring"})
    manifest = annotated_manifest(folder, kept, set(usable), labels)
    return ManifestResult(manifest, annotations_frame(boxes), skipped_frame(skipped))
