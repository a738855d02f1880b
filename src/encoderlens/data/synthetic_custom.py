"""Synthetic datasets in the formats of your own data (`coco`, `boxes`, `images`).

Each is converted from a synthetic dataset of the real layouts, so the pictures carry what the
studies look for: `coco` and `boxes` from synthetic WikiChurches (facades whose style shows only
inside the boxes; building parts as categories; the style as labels.csv's label, the church as its
group), `images` from synthetic OSV-5M (street scenes at real GeoNames places; metadata.csv with the
coordinates and the scene attributes, without admin columns, so the reader derives them).

- coco: images/<file>, annotations.json (or `annotations_file`) as pycocotools reads it: bbox
  [x, y, w, h] in pixels, a rectangle polygon as segmentation, area, iscrowd 0; plus one crowd
  annotation (iscrowd 1), as real COCO files hold some, which the reader records as a skip.
- boxes: images/<file>, boxes.csv in `box_units` (pixels or fraction), labels.csv (image, label,
  group) for every image.
- images: images/<id>.jpg and, with `coordinates`, metadata.csv (image, latitude, longitude,
  cell, land_cover, climate, soil, drive_side, road_index, dist_sea).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd

from encoderlens.data.local_layout import COCO_ANNOTATIONS_FILE
from encoderlens.data.synthetic_churches import write_synthetic_churches
from encoderlens.data.synthetic_streets import write_synthetic_streets

SCENE_COLUMNS = ["cell", "land_cover", "climate", "soil", "drive_side", "road_index", "dist_sea"]


def _churches(root: Path, n_images: int, seed: int, n_annotated: int | None):
    """(manifest, annotations, image sizes) of a synthetic WikiChurches folder written to root/images
    (its metadata files removed afterwards)."""
    from encoderlens.data.custom import image_size
    from encoderlens.data.wikichurches import read_wikichurches

    source = root / ".wikichurches"
    write_synthetic_churches(source, n_images=n_images, seed=seed, n_annotated=n_annotated)
    result = read_wikichurches(source)
    # the boxes as building_parts.json holds them, before the reader clamps the few that overhang an
    # edge: the converted files overhang the same way
    parts = json.loads((source / "building_parts.json").read_text())
    boxes = pd.DataFrame([{"image_id": Path(name).stem, "feature": parts["meta"][element["label"]]["name"],
                           **{key: element[key] for key in ("left", "top", "width", "height")}}
                          for name, entry in parts["annotations"].items()
                          for group in entry["bbox_groups"] for element in group["elements"]],
                         columns=["image_id", "feature", "left", "top", "width", "height"])
    shutil.move(str(source / "images"), str(root / "images"))
    shutil.rmtree(source)
    names = {row.image_id: Path(row.path).name for row in result.manifest.itertuples()}
    sizes = {name: image_size(root / "images" / name) for name in names.values()}
    return result.manifest, boxes, names, sizes


def write_synthetic_coco(root, n_images: int = 40, seed: int = 0, n_annotated: int | None = None,
                         annotations_file: str = COCO_ANNOTATIONS_FILE) -> None:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    manifest, boxes, names, sizes = _churches(root, n_images, seed, n_annotated)
    features = sorted(set(boxes["feature"]))
    categories = [{"id": i + 1, "name": name, "supercategory": name.split()[-1].lower()}
                  for i, name in enumerate(features)]
    category_id = {c["name"]: c["id"] for c in categories}
    image_id = {stem: i + 1 for i, stem in enumerate(manifest["image_id"])}
    images = [{"id": image_id[stem], "file_name": names[stem], "width": sizes[names[stem]][0],
               "height": sizes[names[stem]][1]} for stem in manifest["image_id"]]
    annotations = []
    for box in boxes.itertuples():
        w, h = sizes[names[box.image_id]]
        x, y, bw, bh = box.left * w, box.top * h, box.width * w, box.height * h
        annotations.append({"id": len(annotations) + 1, "image_id": image_id[box.image_id],
                            "category_id": category_id[box.feature], "bbox": [x, y, bw, bh],
                            "area": bw * bh, "iscrowd": 0,
                            "segmentation": [[x, y, x + bw, y, x + bw, y + bh, x, y + bh]]})
    if annotations:  # a crowd region (RLE-free here: its bbox covers the first image's lower half)
        first = images[0]
        annotations.append({"id": len(annotations) + 1, "image_id": first["id"], "category_id": 1,
                            "bbox": [0.0, first["height"] / 2, float(first["width"]), first["height"] / 2],
                            "area": first["width"] * first["height"] / 2, "iscrowd": 1,
                            "segmentation": {"counts": [0], "size": [first["height"], first["width"]]}})
    (root / annotations_file).write_text(json.dumps(
        {"info": {"description": "encoderlens synthetic COCO"}, "images": images,
         "annotations": annotations, "categories": categories}, indent=1) + "\n")
    _write_labels(root, manifest, names)


def _write_labels(root: Path, manifest: pd.DataFrame, names: dict) -> None:
    pd.DataFrame({"image": [names[i] for i in manifest["image_id"]], "label": manifest["style_label"],
                  "group": manifest["church_id"]}).to_csv(root / "labels.csv", index=False)


def write_synthetic_boxes(root, n_images: int = 40, seed: int = 0, n_annotated: int | None = None,
                          box_units: str = "pixels") -> None:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    manifest, boxes, names, sizes = _churches(root, n_images, seed, n_annotated)
    rows = []
    for box in boxes.itertuples():
        name = names[box.image_id]
        w, h = sizes[name] if box_units == "pixels" else (1, 1)
        rows.append({"image": name, "left": box.left * w, "top": box.top * h, "width": box.width * w,
                     "height": box.height * h, "label": box.feature})
    pd.DataFrame(rows, columns=["image", "left", "top", "width", "height", "label"]).to_csv(
        root / "boxes.csv", index=False)
    _write_labels(root, manifest, names)


def write_synthetic_images(root, n_images: int = 40, seed: int = 0, n_countries: int | None = None,
                           planted: bool = True, coordinates: bool = True) -> None:
    root = Path(root)
    source = root / ".osv5m"
    write_synthetic_streets(source, n_images=n_images, seed=seed, n_countries=n_countries, planted=planted)
    table = pd.read_csv(source / "test.csv", keep_default_na=False, dtype={"id": str})
    (root / "images").mkdir(parents=True, exist_ok=True)
    for image in table["id"]:
        shutil.move(str(source / "images" / "test" / "00" / f"{image}.jpg"), str(root / "images" / f"{image}.jpg"))
    shutil.rmtree(source)
    if coordinates:
        metadata = table[["id", "latitude", "longitude", *SCENE_COLUMNS]].rename(columns={"id": "image"})
        metadata["image"] = metadata["image"] + ".jpg"
        metadata.to_csv(root / "metadata.csv", index=False)
