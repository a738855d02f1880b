"""Your own datasets (formats coco, boxes, images): synthetic writer -> reader round trips with the
numbers checked, bad input as skip records or errors naming file, line and column, and the COCO reading
cross-checked against pycocotools, the admin levels against reverse_geocoder."""

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from encoderlens.config_check import check_config
from encoderlens.data.formats import read_dataset, write_synthetic_dataset
from encoderlens.data.listing import metadata_files
from encoderlens.data.local_layout import local_dataset_problem
from encoderlens.data.manifest import empty_annotations

from conftest import REPO

BOX = ["left", "top", "width", "height"]


def image(path, size, colour=(90, 120, 150)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def reasons(result):
    return dict(zip(result.skipped["row"], result.skipped["reason"]))


@pytest.fixture(scope="module")
def churches(tmp_path_factory):
    """The same synthetic facades as WikiChurches, COCO, boxes in pixels and boxes in fractions."""
    root = tmp_path_factory.mktemp("synthetic")
    settings = {"n_images": 8, "seed": 3, "n_annotated": 4}
    write_synthetic_dataset("wikichurches", root / "wikichurches", **settings)
    write_synthetic_dataset("coco", root / "coco", **settings, annotations_file="instances.json")
    write_synthetic_dataset("boxes", root / "pixels", **settings, box_units="pixels")
    write_synthetic_dataset("boxes", root / "fraction", **settings, box_units="fraction")
    return root


def test_coco_and_boxes_round_trip_to_the_wikichurches_boxes(churches):
    reference = read_dataset("wikichurches", churches / "wikichurches")
    assert reference.annotations["clamped"].any()  # the synthetic facades include boxes cut at an edge
    for fmt, folder, options in [("coco", "coco", {"annotations_file": "instances.json"}),
                                 ("boxes", "pixels", {"box_units": "pixels"}),
                                 ("boxes", "fraction", {"box_units": "fraction"})]:
        result = read_dataset(fmt, churches / folder, **options)
        assert list(result.annotations.dtypes) == list(empty_annotations().dtypes)
        key = ["image_id", "feature", "left", "top"]
        ours = result.annotations.sort_values(key).reset_index(drop=True)
        theirs = reference.annotations.sort_values(key).reset_index(drop=True)
        assert list(ours["feature"]) == list(theirs["feature"]) and len(ours) == len(theirs)
        np.testing.assert_allclose(ours[BOX].to_numpy(), theirs[BOX].to_numpy(), atol=1e-9)
        assert list(ours["clamped"]) == list(theirs["clamped"])
        # the manifest: the same images and splits; labels.csv gives the style and the church
        columns = ["image_id", "split", "church_id", "style_label", "exif_orientation"]
        assert result.manifest[columns].equals(reference.manifest[columns]), fmt
        assert (result.manifest["styles"] == reference.manifest["style_label"]).all()
    coco = read_dataset("coco", churches / "coco", annotations_file="instances.json")
    assert list(coco.skipped["reason"]) == ["crowd annotation (iscrowd=1): a region of many objects, not one instance"]


def test_pixel_boxes_are_fractions_of_the_stored_size_clamped_and_bad_rows_skipped(tmp_path):
    image(tmp_path / "images" / "a.jpg", (100, 50))
    image(tmp_path / "images" / "sub" / "b.png", (80, 80))
    image(tmp_path / "images" / "c.jpg", (40, 40))
    (tmp_path / "boxes.csv").write_text(
        "image,left,top,width,height,label\n"
        "a.jpg,10,5,20,10,window\n"            # line 2: inside
        "a.jpg,-10,40,30,20,portal\n"          # line 3: overhangs left and bottom -> clamped
        "a.jpg,120,0,10,10,window\n"           # line 4: entirely outside
        "sub/b.png,8,16,40,8,window\n"         # line 5
        "a.jpg,10,5,20,10,window\n"            # line 6: duplicate of line 2
        "zz.jpg,1,1,5,5,window\n"              # line 7: no such image
        "sub/b.png,5,5,0,10,window\n"          # line 8: zero width
        "c.jpg,50,50,5,5,window\n")            # line 9: c's only box is outside
    (tmp_path / "labels.csv").write_text("image,label,group\na.jpg,gothic,g1\nsub/b.png,baroque,g1\n"
                                         "zz.jpg,gothic,g2\n")
    result = read_dataset("boxes", tmp_path, box_units="pixels")
    boxes = result.annotations.set_index(["image_id", "box_id"])
    np.testing.assert_allclose(boxes.loc[("a", 0), BOX].to_numpy(float), [10 / 100, 5 / 50, 20 / 100, 10 / 50])
    np.testing.assert_allclose(boxes.loc[("a", 1), BOX].to_numpy(float), [0, 40 / 50, 20 / 100, 10 / 50])
    np.testing.assert_allclose(boxes.loc[("b", 0), BOX].to_numpy(float), [0.1, 0.2, 0.5, 0.1])
    assert list(result.annotations["clamped"]) == [False, True, False]
    assert list(result.annotations["feature"]) == ["window", "portal", "window"]
    skips = reasons(result)
    assert skips["line 4 (image=a.jpg)"].startswith("box outside the image")
    assert skips["line 6 (image=a.jpg)"] == "duplicate of line 2"
    assert skips["line 7 (image=zz.jpg)"].startswith("no image 'zz.jpg'")
    assert skips["line 8 (image=sub/b.png)"].startswith("zero-area box")
    assert skips["c.jpg"].startswith("image left with no usable box (1 skipped)")
    assert skips["line 4 (image=zz.jpg)"].startswith("no image 'zz.jpg'")  # labels.csv
    manifest = result.manifest.set_index("image_id")
    assert manifest.loc[["a", "b", "c"], "split"].tolist() == ["annotated", "annotated", "pool"]
    assert manifest.loc[["a", "b", "c"], "church_id"].tolist() == ["g1", "g1", "c"]
    assert manifest.loc[["a", "b", "c"], "style_label"].tolist() == ["gothic", "baroque", ""]
    # the same boxes in fractions read the same
    (tmp_path / "boxes.csv").write_text("image,left,top,width,height,label\na.jpg,0.1,0.1,0.2,0.2,window\n"
                                        "a.jpg,-0.1,0.8,0.3,0.4,portal\n")
    fractions = read_dataset("boxes", tmp_path, box_units="fraction").annotations
    np.testing.assert_allclose(fractions[BOX].to_numpy(float), [[0.1, 0.1, 0.2, 0.2], [0, 0.8, 0.2, 0.2]])
    assert list(fractions["clamped"]) == [False, True]


def test_boxes_errors_name_file_line_and_column(tmp_path):
    image(tmp_path / "images" / "a.jpg", (10, 10))
    path = tmp_path / "boxes.csv"
    path.write_text("image,left,top,width,label\na.jpg,1,1,2,x\n")
    with pytest.raises(ValueError, match=r"boxes\.csv: missing required columns \['height'\]"):
        read_dataset("boxes", tmp_path, box_units="pixels")
    path.write_text("image,left,top,width,height,label\na.jpg,1,1,2,2,x\na.jpg,1,one,2,2,x\n")
    with pytest.raises(ValueError, match=r"boxes\.csv: line 3, column 'top': 'one' is not a number"):
        read_dataset("boxes", tmp_path, box_units="pixels")
    path.write_text('image,left,top,width,height,label\na.jpg,1,1,2,2,"x\n')
    with pytest.raises(ValueError, match=r"boxes\.csv: malformed CSV"):
        read_dataset("boxes", tmp_path, box_units="pixels")
    with pytest.raises(ValueError, match="needs box_units"):
        read_dataset("boxes", tmp_path)
    with pytest.raises(ValueError, match=r"known: \['boxes', 'captions', 'coco', 'images', 'osv5m', 'wikichurches'\]"):
        read_dataset("yolo", tmp_path)
    with pytest.raises(ValueError, match=r"takes no option\(s\) \['box_units'\]"):
        read_dataset("coco", tmp_path, box_units="pixels")


def coco_file(tmp_path, annotations, images=None):
    image(tmp_path / "images" / "a.jpg", (200, 100))
    image(tmp_path / "images" / "b.jpg", (50, 50))
    data = {"images": images or [{"id": 1, "file_name": "a.jpg", "width": 200, "height": 100},
                                 {"id": 2, "file_name": "b.jpg", "width": 50, "height": 50}],
            "annotations": annotations,
            "categories": [{"id": 1, "name": "person", "supercategory": "person"},
                           {"id": 7, "name": "car", "supercategory": "vehicle"}]}
    (tmp_path / "annotations.json").write_text(json.dumps(data))
    return tmp_path / "annotations.json"


BAD_COCO = [
    {"id": 10, "image_id": 1, "category_id": 1, "bbox": [20, 10, 40, 30], "iscrowd": 0, "area": 1200},
    {"id": 11, "image_id": 1, "category_id": 7, "bbox": [180, 90, 40, 20], "iscrowd": 0},  # overhangs
    {"id": 12, "image_id": 1, "category_id": 1, "bbox": [0, 0, 200, 100], "iscrowd": 1},  # crowd
    {"id": 13, "image_id": 2, "category_id": 1, "segmentation": [[1, 1, 9, 1, 9, 9]], "iscrowd": 0},
    {"id": 14, "image_id": 2, "category_id": 1, "bbox": [], "segmentation": [[1, 1, 9, 1, 9, 9]], "iscrowd": 0},
    {"id": 15, "image_id": 3, "category_id": 1, "bbox": [1, 1, 5, 5], "iscrowd": 0},  # unknown image
    {"id": 16, "image_id": 1, "category_id": 1, "bbox": [20, 10, 40, 30], "iscrowd": 0},  # duplicate box
    {"id": 17, "image_id": 2, "category_id": 7, "bbox": [60, 0, 5, 5], "iscrowd": 0},  # outside
    {"id": 18, "image_id": 2, "category_id": 3, "bbox": [1, 1, 5, 5], "iscrowd": 0},  # unknown category
    {"id": 19, "image_id": 2, "category_id": 7, "bbox": [5, 10, 25, 20], "iscrowd": 0},
]


def test_coco_boxes_skips_and_clamping(tmp_path):
    coco_file(tmp_path, BAD_COCO)
    result = read_dataset("coco", tmp_path)
    table = result.annotations.set_index("box_id")
    assert list(table.index) == [10, 11, 19] and list(table["feature"]) == ["person", "car", "car"]
    np.testing.assert_allclose(table.loc[10, BOX].to_numpy(float), [0.1, 0.1, 0.2, 0.3])
    np.testing.assert_allclose(table.loc[11, BOX].to_numpy(float), [0.9, 0.9, 0.1, 0.1])
    np.testing.assert_allclose(table.loc[19, BOX].to_numpy(float), [0.1, 0.2, 0.5, 0.4])
    assert list(table["clamped"]) == [False, True, False]
    skips = reasons(result)
    assert skips["annotations[2] (id=12)"].startswith("crowd annotation (iscrowd=1)")
    assert skips["annotations[3] (id=13)"] == "segmentation-only annotation without a bbox"
    assert skips["annotations[4] (id=14)"] == "segmentation-only annotation without a bbox"
    assert skips["annotations[5] (id=15)"] == "image_id 3 is not in images"
    assert skips["annotations[6] (id=16)"] == "duplicate of annotations[0] (same image, category and bbox)"
    assert skips["annotations[7] (id=17)"].startswith("box outside the image")
    assert skips["annotations[8] (id=18)"] == "category_id 3 is not in categories"
    assert len(result.skipped) == 7
    assert list(result.manifest["split"]) == ["annotated", "annotated"]


def test_coco_cross_checked_against_pycocotools(tmp_path):
    """Every box pycocotools gives for an image (non-crowd, with a bbox), as a fraction of the image's
    width and height, clamped, is the reader's; what the reader leaves out is a skip record."""
    from pycocotools.coco import COCO

    path = coco_file(tmp_path, BAD_COCO)
    ours = read_dataset("coco", tmp_path)
    coco = COCO(str(path))
    expected = []
    for image_id in coco.getImgIds():
        info = coco.loadImgs(image_id)[0]
        for annotation in coco.loadAnns(coco.getAnnIds(imgIds=[image_id], iscrowd=False)):
            if not annotation.get("bbox"):
                continue
            x, y, w, h = annotation["bbox"]
            left, top = max(x / info["width"], 0), max(y / info["height"], 0)
            right = min((x + w) / info["width"], 1)
            bottom = min((y + h) / info["height"], 1)
            if right > left and bottom > top and annotation["category_id"] in coco.cats:
                expected.append((annotation["id"], coco.loadCats(annotation["category_id"])[0]["name"],
                                 left, top, right - left, bottom - top))
    theirs = pd.DataFrame(expected, columns=["box_id", "feature", *BOX])
    theirs = theirs.drop_duplicates(["feature", *BOX])  # annotation 16 repeats 10
    assert list(ours.annotations["box_id"]) == list(theirs["box_id"])
    assert list(ours.annotations["feature"]) == list(theirs["feature"])
    np.testing.assert_allclose(ours.annotations[BOX].to_numpy(float), theirs[BOX].to_numpy(float))
    used = set(ours.annotations["box_id"])
    left_out = {a["id"] for a in coco.dataset["annotations"]} - used
    assert {int(row.split("id=")[1].rstrip(")")) for row in ours.skipped["row"]} == left_out


def test_coco_errors_name_file_entry_and_key(tmp_path):
    path = coco_file(tmp_path, [{"id": 1, "image_id": 1, "bbox": [0, 0, 1, 1]}])
    with pytest.raises(ValueError, match=r"annotations\.json: annotations\[0\] lacks the key\(s\) \['category_id'\]"):
        read_dataset("coco", tmp_path)
    path.write_text('{"images": [], "annotations": [\n  {"id": 1,}\n]}')
    with pytest.raises(ValueError, match=r"annotations\.json: malformed JSON at line 2, column 12"):
        read_dataset("coco", tmp_path)
    path.write_text('{"images": [], "annotations": []}')
    with pytest.raises(ValueError, match=r"annotations\.json: 'categories' is missing"):
        read_dataset("coco", tmp_path)
    # an image whose file is not the size the JSON gives: skipped with both sizes
    coco_file(tmp_path, [], images=[{"id": 1, "file_name": "a.jpg", "width": 100, "height": 100}])
    result = read_dataset("coco", tmp_path)
    assert result.manifest.empty
    assert "(200, 100) pixels (width, height), annotations.json says (100, 100)" in result.skipped["reason"].iloc[0]


def test_images_admin_levels_derived_as_reverse_geocoder_labels_them(tmp_path):
    import reverse_geocoder

    write_synthetic_dataset("images", tmp_path / "photos", n_images=8, seed=1)
    result = read_dataset("images", tmp_path / "photos")
    manifest = result.manifest
    assert len(manifest) == 8 and result.skipped.empty and result.annotations is None
    # the default mode, as OSV-5M labelled (and the package keeps its first tree: one mode per process)
    truth = reverse_geocoder.search(list(zip(manifest["latitude"], manifest["longitude"])), verbose=False)
    assert list(manifest["country"]) == [t["cc"] for t in truth]
    assert list(manifest["region"]) == [t["admin1"] for t in truth]
    assert list(manifest["sub-region"]) == [t["admin2"] for t in truth]
    assert list(manifest["city"]) == [t["name"] for t in truth]
    first = truth[0]
    assert manifest["unique_region"].iloc[0] == (f"{first['admin1']}_{first['cc']}" if first["admin1"] else "")
    assert (manifest["admin_derived"] == "country|region|sub-region|city").all()
    # scene attributes as numbers where they are numbers, text where not
    assert pd.api.types.is_integer_dtype(manifest["land_cover"]) and manifest["cell"].iloc[0].startswith("(")
    assert not pd.api.types.is_numeric_dtype(manifest["cell"])


def test_images_metadata_rows_given_admin_and_bad_coordinates(tmp_path):
    image(tmp_path / "images" / "a.jpg", (20, 20))
    image(tmp_path / "images" / "b.jpg", (20, 20))
    image(tmp_path / "images" / "c.jpg", (20, 20))
    image(tmp_path / "images" / "d.jpg", (20, 20))
    (tmp_path / "metadata.csv").write_text(
        "image,latitude,longitude,country,weather\n"
        "a.jpg,48.8566,2.3522,NA,sunny\n"      # the country as written (NA: Namibia, not missing)
        "b.jpg,95,2,FR,rain\n"                 # latitude out of range
        "c.jpg,,2,FR,rain\n"                   # no latitude
        "a.jpg,1,1,FR,rain\n"                  # duplicate
        "x.jpg,1,1,FR,rain\n")                 # no such photo
    result = read_dataset("images", tmp_path)
    assert list(result.manifest["image_id"]) == ["a"]
    row = result.manifest.iloc[0]
    assert row["country"] == "NA" and row["region"] == "Ile-de-France" and row["city"] == "Paris"
    assert row["weather"] == "sunny" and row["admin_derived"] == "region|sub-region|city"
    skips = reasons(result)
    assert skips["line 3 (image=b.jpg)"] == "latitude 95 outside [-90, 90]"
    assert skips["line 4 (image=c.jpg)"] == "missing latitude/longitude"
    assert skips["line 5 (image=a.jpg)"] == "duplicate row for image 'a.jpg' (first on line 2)"
    assert skips["line 6 (image=x.jpg)"].startswith("no image 'x.jpg'")
    assert skips["d.jpg"] == "no row in metadata.csv: no coordinates"
    # without coordinates: every photo, no admin levels; with them required, a clear error
    no_places = read_dataset("images", tmp_path, coordinates=False)
    assert list(no_places.manifest["image_id"]) == ["a", "b", "c", "d"] and "country" in no_places.manifest

    (tmp_path / "metadata.csv").write_text("image,weather\na.jpg,sunny\n")
    missing = r"metadata\.csv: missing required columns \['latitude', 'longitude'\].*coordinates: false"
    with pytest.raises(ValueError, match=missing):
        read_dataset("images", tmp_path)
    (tmp_path / "metadata.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"metadata\.csv: not found; the street-view studies need coordinates"):
        read_dataset("images", tmp_path)
    assert "set coordinates: false" in local_dataset_problem("mine", "images", tmp_path, {"coordinates": True})
    assert local_dataset_problem("mine", "images", tmp_path, {"coordinates": False}) is None
    assert metadata_files("images", tmp_path) == []  # optional: no missing input for Snakemake
    assert read_dataset("images", tmp_path, coordinates=False).manifest["image_id"].tolist() == ["a", "b", "c", "d"]
    # a photo without a row has no value; a column of numbers stays numbers
    (tmp_path / "metadata.csv").write_text("image,temp\na.jpg,3.5\nb.jpg,\n")
    temp = read_dataset("images", tmp_path, coordinates=False).manifest["temp"]
    assert pd.api.types.is_float_dtype(temp) and temp.iloc[0] == 3.5 and temp.iloc[1:].isna().all()


def test_the_schema_takes_the_formats_and_their_options():
    schema = REPO / "schemas" / "config.schema.yaml"
    models = {"m": {"family": "clip", "source": "tiny"}}
    good = {"coco": {"format": "coco", "source": "local", "path": "x", "annotations_file": "instances_val.json",
                     "models": ["m"]},
            "boxes": {"format": "boxes", "source": "local", "path": "y", "box_units": "fraction", "models": ["m"]},
            "photos": {"format": "images", "source": "local", "path": "z", "coordinates": False, "models": ["m"]}}
    check_config({"datasets": good, "models": models}, schema)
    bad = {"a": {"format": "yolo", "source": "local", "path": "x", "models": ["m"]},
           "b": {"format": "boxes", "source": "local", "path": "y", "models": ["m"]},
           "c": {"format": "boxes", "source": "local", "path": "y", "box_units": "percent", "models": ["m"]},
           "d": {"format": "coco", "source": "local", "path": "y", "annotation_file": "a.json", "models": ["m"]}}
    with pytest.raises(ValueError) as error:
        check_config({"datasets": bad, "models": models}, schema)
    message = str(error.value)
    assert ("datasets.a.format: 'yolo' is not one of "
            "['wikichurches', 'osv5m', 'captions', 'coco', 'boxes', 'images']") in message
    assert "datasets.b: 'box_units' is a required property" in message
    assert "datasets.c.box_units" in message and "datasets.d" in message and "annotation_file" in message


def test_the_gallery_groups_by_the_columns_the_manifest_has(caplog):
    """Your own photos may lack OSV-5M's scene columns: the gallery study groups by the configured ones
    present, by country when none is, and says so (it stopped with a KeyError before)."""
    from encoderlens.geo.gallery import group_size_histogram
    from encoderlens.geo.job import gallery_study

    rng = np.random.default_rng(0)
    table = pd.DataFrame({"latitude": rng.uniform(-60, 60, 12), "longitude": rng.uniform(-170, 170, 12),
                          "country": ["FR"] * 6 + ["JP"] * 4 + ["NA"] * 2, "climate": [1, 2] * 6})
    matrix = rng.normal(size=(12, 4)).astype(np.float32)
    _, histogram = gallery_study(matrix, table, 6, [0], 0.25, ["cell", "land_cover"])
    pd.testing.assert_frame_equal(histogram, group_size_histogram(table, ["country"]))
    assert histogram["n_groups"].sum() == 3
    assert "no column(s) ['cell', 'land_cover'] (geo.gallery_groups); grouping by country" in caplog.text
    _, histogram = gallery_study(matrix, table, 6, [0], 0.25, ["cell", "climate"])
    assert histogram["n_groups"].sum() == 2


def test_the_readme_configs_of_each_format_validate():
    """The minimal configs in the README's "Your own images, boxes and models" are complete."""
    import re

    import yaml

    text = (REPO / "README.md").read_text()
    section = text.split("## Your own images, boxes and models", 1)[1].split("\n## ", 1)[0]
    blocks = [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", section, re.S)]
    blocks = [block for block in blocks if "datasets" in block]  # the model examples have none
    assert sorted(entry["format"] for block in blocks for entry in block["datasets"].values()) == \
        ["boxes", "coco", "images"]
    models = {"dinov2": {"family": "dinov2", "source": "hub", "hub_id": "facebook/dinov2-with-registers-base"}}
    for block in blocks:
        check_config({**block, "models": models}, REPO / "schemas" / "config.schema.yaml")
