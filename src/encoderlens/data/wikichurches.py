"""Reader for WikiChurches (Barz & Denzler 2021, Zenodo 5166987), real or synthetic.

Expected layout (see `synthetic_churches` for a generator of the same layout):

    root/building_parts.json  {"meta": [{"name", "parents"}], "annotations": {"<QID>_wd0.jpg":
                                {"styles": [QIDs], "bbox_groups": [{"group_label", "elements":
                                  [{"left", "top", "width", "height", "label"}]}]}}}
    root/churches.json        {"<church QID>": {"styles": [QIDs], "images": [file names], ...}}
    root/images/<file name>

An element's `label` is an index into `meta` (the real file) or a name; the annotations table keeps
the name as `feature`. Box coordinates are fractions of the full image.

Manifest: image_id (file name stem), path, split ("annotated": has boxes; "pool": style-labelled
image listed in churches.json without boxes), church_id, styles (the Wikidata style ids joined by
"|": a plain string column survives parquet and CSV alike), style_label (name of the first of the
four studied styles in `styles`, "" if none).

Annotations: image_id, box_id (the element's position among the image's elements, counting skipped
ones, so it points back into the JSON), feature, left, top, width, height clamped to [0, 1], clamped.
Boxes with zero or negative extent, or entirely outside the image, become skip records; so do
images that are missing or do not decode. Malformed JSON raises ValueError naming file, line, column.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from encoderlens.data.images import image_problem
from encoderlens.data.manifest import ManifestResult, empty_annotations, skipped_frame

STYLES = {"Q46261": "Romanesque", "Q176483": "Gothic", "Q236122": "Renaissance", "Q840829": "Baroque"}
MANIFEST_COLUMNS = ["image_id", "path", "split", "church_id", "styles", "style_label"]


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


def _feature_name(label, meta: list) -> str:
    if isinstance(label, int) and 0 <= label < len(meta) and isinstance(meta[label], dict):
        return str(meta[label].get("name", label))
    return str(label)


def _box(element, meta):
    """(row dict without image_id/box_id, None) for a usable element, else (None, reason)."""
    try:
        left, top, width, height = (float(element[k]) for k in ("left", "top", "width", "height"))
    except (KeyError, TypeError, ValueError):
        return None, "malformed box (needs numeric left, top, width, height)"
    if width <= 0 or height <= 0:
        return None, f"zero-area box (width={width}, height={height})"
    right, bottom = left + width, top + height
    if left >= 1 or top >= 1 or right <= 0 or bottom <= 0:
        return None, f"box outside the image (left={left}, top={top}, width={width}, height={height})"
    # Annotators' boxes sometimes overhang the image edge (negative coordinates in the real file):
    # keep the part inside the image and flag it.
    c_left, c_top = max(left, 0.0), max(top, 0.0)
    c_right, c_bottom = min(right, 1.0), min(bottom, 1.0)
    clamped = (c_left, c_top, c_right, c_bottom) != (left, top, right, bottom)
    row = {"feature": _feature_name(element.get("label"), meta), "left": c_left, "top": c_top,
           "width": c_right - c_left if clamped else width,
           "height": c_bottom - c_top if clamped else height, "clamped": clamped}
    return row, None


def read_wikichurches(root, decode_images: bool = True) -> ManifestResult:
    """Manifest, annotations and skip records of a WikiChurches folder."""
    root = Path(root)
    parts_path, churches_path = root / "building_parts.json", root / "churches.json"
    parts, churches = load_json(parts_path), load_json(churches_path)
    if not isinstance(parts, dict) or not isinstance(parts.get("annotations"), dict):
        raise ValueError(f"{parts_path}: expected an object with an \"annotations\" object")
    if not isinstance(churches, dict):
        raise ValueError(f"{churches_path}: expected an object keyed by church id")
    meta = parts.get("meta") or []

    church_of_image, church_styles = {}, {}
    for qid, info in churches.items():
        if not isinstance(info, dict):
            raise ValueError(f"{churches_path}: entry {qid!r} is not an object")
        church_styles[qid] = [str(s) for s in info.get("styles") or []]
        for name in info.get("images") or []:
            church_of_image.setdefault(name, qid)

    rows, boxes, skipped, ids = [], [], [], set()

    def add_image(name, split, styles):
        path = root / "images" / name
        problem = image_problem(path, decode=decode_images)
        if problem:
            skipped.append({"file": str(path), "row": name, "reason": problem})
            return False
        stem = Path(name).stem
        if stem in ids:
            skipped.append({"file": str(path), "row": name, "reason": f"duplicate image_id {stem}"})
            return False
        ids.add(stem)
        church = church_of_image.get(name, stem.split("_")[0])
        rows.append({"image_id": stem, "path": str(path), "split": split, "church_id": church,
                     "styles": "|".join(styles), "style_label": style_label(styles)})
        return True

    for name, entry in parts["annotations"].items():
        if not isinstance(entry, dict):
            raise ValueError(f"{parts_path}: annotation {name!r} is not an object")
        church = church_of_image.get(name, Path(name).stem.split("_")[0])
        styles = [str(s) for s in entry.get("styles") or church_styles.get(church, [])]
        if not add_image(name, "annotated", styles):
            continue  # its boxes would point at an image the manifest does not have
        box_id = 0
        for g, group in enumerate(entry.get("bbox_groups") or []):
            for e, element in enumerate(group.get("elements") or []):
                row, reason = _box(element, meta)
                if reason:
                    skipped.append({"file": str(parts_path),
                                    "row": f"{name} bbox_groups[{g}].elements[{e}]", "reason": reason})
                else:
                    boxes.append({"image_id": Path(name).stem, "box_id": box_id, **row})
                box_id += 1

    seen = set(parts["annotations"])
    for qid, info in churches.items():
        for name in info.get("images") or []:
            if name in seen:
                continue  # annotated images are already in, with their boxes
            seen.add(name)
            add_image(name, "pool", church_styles[qid])

    manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS).astype(str)
    annotations = pd.DataFrame(boxes, columns=empty_annotations().columns) if boxes else empty_annotations()
    annotations = annotations.astype(empty_annotations().dtypes.to_dict())
    return ManifestResult(manifest, annotations, skipped_frame(skipped))
