"""Reader for WikiChurches (Barz & Denzler 2021, Zenodo 5166987), real or synthetic.

The real layout (see `synthetic_churches` for a generator of the same layout), as the dataset's own
users read it (cvjena's chia `WikiChurchesDataset`, the ssl_wikichurches loader and data notebook):

    root/building_parts.json  {"meta": [{"name", "parents": [meta indices]}] (106 in the real file),
                               "annotations": {"<QID>_wd0.jpg": {"styles": [QIDs], "bbox_groups":
                                 [{"group_label": meta index, "elements": [{"left", "top", "width",
                                   "height", "label": meta index}]}]}}}   (139 images, 631 boxes)
    root/churches.json        {"<church QID>": {"id", "name", "built_year" (int, list or null),
                               "styles": [QIDs], "country": {"id", "name"}, "location": {"lat",
                               "lon"}}}: no list of images
    root/image_meta.json      {"<church QID>_wd<k>.jpg": {per-image metadata}}: the list of images;
                               only the keys are read, the church is the name before the first "_"
    root/style_names.txt      "<QID> <name>" per line (read by nobody here)
    root/images/<file name>

An element's `label` is an index into `meta`; the annotations table keeps its name as `feature`. Box
coordinates are fractions of the image as stored (no EXIF rotation, see `encoderlens.data.images`).

Manifest: image_id (file name stem), path, split ("annotated": has boxes in building_parts.json;
"pool": every other image of image_meta.json, style-labelled through its church in churches.json),
church_id, styles (the Wikidata style ids joined by "|": a plain string column survives parquet and
CSV alike), style_label (name of the first of the four studied styles in `styles`, "" if none), then
the pixel columns of `encoderlens.data.images` (exif_orientation, image_mode, pixel_conversion).

Annotations: image_id, box_id (the element's position among the image's elements, counting skipped
ones, so it points back into the JSON), feature, left, top, width, height clamped to [0, 1], clamped.
Skip records, each naming the file, the image or box, and the problem: a box whose coordinates are not
finite numbers (NaN, Infinity, strings), with zero or negative extent, or entirely outside the image;
a label that is not an index into `meta`; an annotated image left with no usable box (it stays in the
manifest, held out of training, but nothing of it can be scored); an image of image_meta.json whose
church churches.json lacks; images that are missing, do not decode, or have no defined 8-bit RGB
conversion. Malformed JSON raises ValueError naming file, line, column.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from encoderlens.data.images import PIXEL_COLUMNS, add_pixel_columns, check_image, remembered_checks
from encoderlens.data.manifest import ManifestResult, clamp_box, empty_annotations, skipped_frame

STYLES = {"Q46261": "Romanesque", "Q176483": "Gothic", "Q236122": "Renaissance", "Q840829": "Baroque"}
LABEL_COLUMNS = ["image_id", "path", "split", "church_id", "styles", "style_label"]
MANIFEST_COLUMNS = LABEL_COLUMNS + PIXEL_COLUMNS
COORDINATES = ("left", "top", "width", "height")


def load_json(path: Path):
    """json.load with errors that name the file and the position of the fault."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (expected part of a WikiChurches folder)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: malformed JSON at line {error.lineno}, column {error.colno}: "
                         f"{error.msg}") from error


def style_label(styles: list[str]) -> str:
    return next((STYLES[s] for s in styles if s in STYLES), "")


def church_of(file_name: str) -> str:
    """The church's Wikidata id of an image file name `<QID>_wd<k>.jpg` (the part before the first _)."""
    return file_name.split("_", 1)[0]


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _box(element, meta):
    """(row dict without image_id/box_id, None) for a usable element, else (None, reason)."""
    if not isinstance(element, dict):
        return None, f"element is not an object: {element!r}"
    for key in COORDINATES:
        if key not in element:
            return None, f"missing coordinate {key!r}"
        if not _number(element[key]):
            return None, f"coordinate {key}={element[key]!r} is not a number"
        if not math.isfinite(element[key]):
            return None, f"coordinate {key}={element[key]!r} is not finite"
    label = element.get("label")
    if (not _number(label) or not math.isfinite(label) or label != int(label)
            or not 0 <= label < len(meta)):
        return None, (f"label {label!r} is not an index into building_parts.json's meta "
                      f"(0..{len(meta) - 1})")
    # Annotators' boxes sometimes overhang the image edge (negative coordinates in the real file):
    # keep the part inside the image and flag it.
    box, reason = clamp_box(*(float(element[k]) for k in COORDINATES))
    if reason:
        return None, reason
    entry = meta[int(label)]
    feature = str(entry.get("name", int(label))) if isinstance(entry, dict) else str(int(label))
    return {"feature": feature, **dict(zip((*COORDINATES, "clamped"), box))}, None


def _groups(entry):
    groups = entry.get("bbox_groups") or []
    return groups if isinstance(groups, list) else None


def read_wikichurches(root, decode_images: bool = True) -> ManifestResult:
    """Manifest, annotations and skip records of a WikiChurches folder."""
    root = Path(root)
    parts_path, churches_path = root / "building_parts.json", root / "churches.json"
    meta_path = root / "image_meta.json"
    parts, churches, image_meta = load_json(parts_path), load_json(churches_path), load_json(meta_path)
    if not isinstance(parts, dict) or not isinstance(parts.get("annotations"), dict):
        raise ValueError(f"{parts_path}: expected an object with an \"annotations\" object")
    if not isinstance(churches, dict):
        raise ValueError(f"{churches_path}: expected an object keyed by church id")
    if not isinstance(image_meta, dict):
        raise ValueError(f"{meta_path}: expected an object keyed by image file name")
    meta = parts.get("meta") or []
    if not isinstance(meta, list):
        raise ValueError(f"{parts_path}: \"meta\" is not a list")

    church_styles = {}
    for qid, info in churches.items():
        if not isinstance(info, dict):
            raise ValueError(f"{churches_path}: entry {qid!r} is not an object")
        styles = info.get("styles") or []
        if not isinstance(styles, list):
            raise ValueError(f"{churches_path}: entry {qid!r} has styles {styles!r}, not a list")
        church_styles[qid] = [str(s) for s in styles]

    rows, boxes, skipped, ids = [], [], [], set()

    def add_image(name, split, styles):
        path = root / "images" / name
        problem = check_image(path, decode=decode_images).problem
        if problem:
            skipped.append({"file": str(path), "row": name, "reason": problem})
            return False
        stem = Path(name).stem
        if stem in ids:
            skipped.append({"file": str(path), "row": name, "reason": f"duplicate image_id {stem}"})
            return False
        ids.add(stem)
        rows.append({"image_id": stem, "path": str(path), "split": split, "church_id": church_of(name),
                     "styles": "|".join(styles), "style_label": style_label(styles)})
        return True

    with remembered_checks() as checks:
        for name, entry in parts["annotations"].items():
            if not isinstance(entry, dict) or _groups(entry) is None:
                raise ValueError(f"{parts_path}: annotation {name!r} is not an object with a "
                                 "bbox_groups list")
            styles = [str(s) for s in entry.get("styles") or church_styles.get(church_of(name), [])]
            if not add_image(name, "annotated", styles):
                continue  # its boxes would point at an image the manifest does not have
            box_id, usable = 0, 0
            for g, group in enumerate(_groups(entry)):
                elements = group.get("elements") if isinstance(group, dict) else None
                if not isinstance(elements, list):
                    skipped.append({"file": str(parts_path), "row": f"{name} bbox_groups[{g}]",
                                    "reason": "bbox group without an elements list"})
                    continue
                for e, element in enumerate(elements):
                    row, reason = _box(element, meta)
                    if reason:
                        skipped.append({"file": str(parts_path),
                                        "row": f"{name} bbox_groups[{g}].elements[{e}]", "reason": reason})
                    else:
                        boxes.append({"image_id": Path(name).stem, "box_id": box_id, **row})
                        usable += 1
                    box_id += 1
            if not usable:
                what = f"left with no usable box ({box_id} skipped)" if box_id else "has no boxes"
                skipped.append({"file": str(parts_path), "row": name,
                                "reason": f"annotated image {what}: it takes no part in scoring"})

        for name in image_meta:
            if name in parts["annotations"]:
                continue  # annotated images are already in, with their boxes
            church = church_of(name)
            if church not in church_styles:
                skipped.append({"file": str(meta_path), "row": name,
                                "reason": f"church {church} is not in churches.json (no styles)"})
                continue
            add_image(name, "pool", church_styles[church])

    manifest = pd.DataFrame(rows, columns=LABEL_COLUMNS).astype(str)
    manifest = add_pixel_columns(manifest, checks)
    annotations = pd.DataFrame(boxes, columns=empty_annotations().columns) if boxes else empty_annotations()
    annotations = annotations.astype(empty_annotations().dtypes.to_dict())
    return ManifestResult(manifest, annotations, skipped_frame(skipped))
