"""Reader for the `coco` format: your own images with a COCO instances file.

    root/images/<file_name>            as the JSON's images[].file_name names it (any depth)
    root/annotations.json              the file name is configurable (`annotations_file`)
    root/labels.csv                    optional: image (= file_name), label[, group]

The JSON as pycocotools reads it (cocodataset/cocoapi, PythonAPI/pycocotools/coco.py: `createIndex`
indexes `images` by `id`, `annotations` by `id` and `image_id`, `categories` by `id`; `loadRes` and
`showAnns` read `bbox` as [x, y, width, height] in pixels; cocoeval.py ignores `iscrowd` 1):

    {"images": [{"id", "file_name", "width", "height", ...}],
     "annotations": [{"id", "image_id", "category_id", "bbox": [x, y, w, h], "iscrowd": 0 | 1,
                      "segmentation": polygons or RLE, "area", ...}],
     "categories": [{"id", "name", "supercategory"}]}

A category's `name` is the box's feature type (the per-feature analysis groups by it; the
supercategory is not used). Boxes become fractions of the image's `width` and `height` as the JSON
gives them, clamped to the image like WikiChurches' (`clamped`); `box_id` is the annotation's `id`.

Manifest: the JSON's images in the WikiChurches reader's columns (`encoderlens.data.custom`): split
"annotated" with a usable box, "pool" without; labels.csv as for the boxes format.

Skip records: a crowd annotation (iscrowd 1: a region of many objects, not one instance; COCO's
evaluation ignores it), a segmentation-only one (no bbox, or an empty one), a bbox that is not four
finite numbers, has zero extent or lies entirely outside its image, an annotation for an image id
or category id the file does not list, a repeated annotation id, a duplicate (same image, category
and bbox), an annotation of an image that was itself skipped; an image repeating an id, missing,
undecodable, or whose file is not the size the JSON gives; a repeated category id. Errors naming
the file (and entry and key): malformed JSON (line, column), a missing or mistyped top-level list,
an entry lacking a required key.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from encoderlens.data.custom import (annotated_manifest, annotations_frame, fraction_box, image_size,
                                     labels_table, usable_images)
from encoderlens.data.local_layout import COCO_ANNOTATIONS_FILE
from encoderlens.data.manifest import ManifestResult, skipped_frame

REQUIRED_KEYS = {"images": ("id", "file_name", "width", "height"),
                 "annotations": ("id", "image_id", "category_id"),
                 "categories": ("id", "name")}


def _load(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (the coco format's instances file; the name is "
                                "datasets.<name>.annotations_file)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: malformed JSON at line {error.lineno}, column {error.colno}: "
                         f"{error.msg}") from error
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a COCO object with images, annotations and categories")
    for key, required in REQUIRED_KEYS.items():
        entries = data.get(key)
        if not isinstance(entries, list):
            raise ValueError(f"{path}: {key!r} is {'missing' if entries is None else 'not a list'}")
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise ValueError(f"{path}: {key}[{i}] is not an object")
            lacking = [k for k in required if k not in entry]
            if lacking:
                raise ValueError(f"{path}: {key}[{i}] lacks the key(s) {lacking}")
    return data


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _bbox_problem(annotation) -> str | None:
    if annotation.get("iscrowd", 0) == 1:
        return "crowd annotation (iscrowd=1): a region of many objects, not one instance"
    bbox = annotation.get("bbox")
    if bbox is None or (isinstance(bbox, list) and not bbox):
        what = "segmentation-only annotation" if annotation.get("segmentation") else "annotation"
        return f"{what} without a bbox"
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(_number(v) for v in bbox):
        return f"bbox {bbox!r} is not four finite numbers [x, y, width, height]"
    return None


def read_coco(root, annotations_file: str = COCO_ANNOTATIONS_FILE, decode_images: bool = True) -> ManifestResult:
    """Manifest, annotations and skip records of a `coco` folder."""
    root = Path(root)
    path = root / annotations_file
    data = _load(path)
    folder = root / "images"
    skipped: list[dict] = []

    def skip(where, reason):
        skipped.append({"file": str(path), "row": where, "reason": reason})

    categories = {}
    for i, category in enumerate(data["categories"]):
        if category["id"] in categories:
            skip(f"categories[{i}] (id={category['id']})", "duplicate category id")
            continue
        categories[category["id"]] = str(category["name"])

    images, names = {}, []  # COCO image id -> (file name, (width, height))
    for i, image in enumerate(data["images"]):
        where = f"images[{i}] (id={image['id']})"
        name, size = str(image["file_name"]), (image["width"], image["height"])
        if image["id"] in images:
            skip(where, "duplicate image id")
        elif not all(_number(v) and v > 0 for v in size):
            skip(where, f"width and height {size} are not positive numbers")
        elif name in names:
            skip(where, f"file_name {name!r} listed twice")
        else:
            images[image["id"]] = (name, size)
            names.append(name)
    kept = usable_images(folder, names, skipped, decode_images)
    for name, size in images.values():
        if name in kept and image_size(folder / name) != tuple(size):
            skipped.append({"file": str(folder / name), "row": name,
                            "reason": f"the file is {image_size(folder / name)} pixels (width, height), "
                                      f"{path.name} says {tuple(size)}: its boxes would not fit"})
            del kept[name]
    labels = labels_table(root, set(names), skipped)

    boxes, annotation_ids, seen, usable = [], set(), {}, set()
    for i, annotation in enumerate(data["annotations"]):
        where = f"annotations[{i}] (id={annotation['id']})"
        image_id, category_id = annotation["image_id"], annotation["category_id"]
        reason = None
        if annotation["id"] in annotation_ids:
            reason = "duplicate annotation id"
        elif image_id not in images:
            reason = f"image_id {image_id!r} is not in images"
        elif category_id not in categories:
            reason = f"category_id {category_id!r} is not in categories"
        else:
            reason = _bbox_problem(annotation)
        annotation_ids.add(annotation["id"])
        if reason is None:
            key = (image_id, category_id, tuple(annotation["bbox"]))
            if key in seen:
                reason = f"duplicate of {seen[key]} (same image, category and bbox)"
            seen.setdefault(key, f"annotations[{i}]")
        if reason is None and images[image_id][0] not in kept:
            reason = "its image was skipped (see the image's own record)"
        box = None
        if reason is None:
            name, size = images[image_id]
            box, reason = fraction_box(*annotation["bbox"], size, "pixels")
        if reason:
            skip(where, reason)
            continue
        usable.add(name)
        box_id = annotation["id"] if isinstance(annotation["id"], int) else i
        boxes.append({"image_id": kept[name], "box_id": box_id, "feature": categories[category_id],
                      **dict(zip(("left", "top", "width", "height", "clamped"), box))})
    manifest = annotated_manifest(folder, kept, usable, labels)
    return ManifestResult(manifest, annotations_frame(boxes), skipped_frame(skipped))
