"""Readers on synthetic data in the real formats, and on corrupted copies of it."""

import json
import shutil

import pandas as pd
import pytest

from encoderlens.data.captions import read_captions
from encoderlens.data.images import image_problem
from encoderlens.data.manifest import (ANNOTATION_COLUMNS, ManifestResult, read_csv_keep_na,
                                       write_manifest_outputs)
from encoderlens.data.osv5m import read_osv5m
from encoderlens.data.synthetic_captions import write_synthetic_captions
from encoderlens.data.synthetic_churches import META, write_synthetic_churches
from encoderlens.data.synthetic_streets import OSV5M_COLUMNS, write_synthetic_streets
from encoderlens.data.wikichurches import read_wikichurches


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    write_synthetic_churches(root / "churches", n_images=16, seed=0)
    write_synthetic_streets(root / "streets", n_images=24, seed=0)
    write_synthetic_captions(root / "captions", n_images=20, seed=0)
    return root


@pytest.fixture
def copy(sources, tmp_path):
    """A private copy of one synthetic dataset, free to corrupt."""
    def make(name):
        shutil.copytree(sources / name, tmp_path / name)
        return tmp_path / name
    return make


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# ---- images and manifests ----------------------------------------------------------------------
def test_image_problem_names_the_fault(sources, tmp_path):
    good = next((sources / "churches" / "images").glob("*.jpg"))
    assert image_problem(good) is None
    assert image_problem(tmp_path / "absent.jpg") == "missing image file"
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(good.read_bytes()[:2000])
    assert image_problem(cut) == "truncated image"
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not an image at all")
    assert image_problem(junk).startswith("unreadable image: ")
    assert image_problem(cut, decode=False) is None  # existence only: the fast mode


def test_write_manifest_outputs_is_atomic_and_keeps_namibia(tmp_path):
    manifest = pd.DataFrame({"image_id": ["a", "b"], "path": ["x/a.jpg", "x/b.jpg"],
                             "split": ["test", "test"], "country": ["NA", "DE"]})
    skipped = pd.DataFrame([{"file": "x/c.jpg", "row": "line 4 (id=c)", "reason": "missing image file"}])
    out = tmp_path / "results" / "d"
    write_manifest_outputs(ManifestResult(manifest, None, skipped), out / "manifest.parquet",
                           out / "annotations.parquet", out / "skipped.csv")
    assert sorted(p.name for p in out.iterdir()) == ["annotations.parquet", "manifest.parquet", "skipped.csv"]
    assert pd.read_parquet(out / "manifest.parquet")["country"].tolist() == ["NA", "DE"]
    annotations = pd.read_parquet(out / "annotations.parquet")
    assert list(annotations.columns) == ANNOTATION_COLUMNS and len(annotations) == 0
    assert read_csv_keep_na(out / "skipped.csv").to_dict("records") == skipped.to_dict("records")
    duplicated = manifest.assign(image_id=["a", "a"])
    with pytest.raises(ValueError, match="duplicate image_id"):
        write_manifest_outputs(ManifestResult(duplicated), tmp_path / "m.parquet")
    assert not (tmp_path / "m.parquet").exists()


def test_read_csv_keep_na_keeps_the_string_na(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("country,name,value\nNA,Windhoek,1\nNaN,null,\n")
    table = read_csv_keep_na(path)
    assert table["country"].tolist() == ["NA", "NaN"] and table["name"].tolist() == ["Windhoek", "null"]
    assert table["value"].isna().tolist() == [False, True]


# ---- WikiChurches -----------------------------------------------------------------------------
def test_wikichurches_manifest_and_annotations(sources):
    root = sources / "churches"
    result = read_wikichurches(root)
    manifest, annotations = result.manifest, result.annotations
    assert list(manifest.columns) == ["image_id", "path", "split", "church_id", "styles", "style_label",
                                      "exif_orientation", "image_mode", "pixel_conversion"]
    assert len(manifest) == 16 and manifest["image_id"].is_unique and len(result.skipped) == 0
    assert manifest["split"].value_counts().to_dict() == {"annotated": 8, "pool": 8}
    assert set(manifest["style_label"]) == {"Romanesque", "Gothic", "Renaissance", "Baroque"}
    assert manifest["path"].str.startswith(str(root / "images") + "/").all()
    assert (manifest["exif_orientation"] == 1).all() and (manifest["image_mode"] == "RGB").all()
    assert (manifest["pixel_conversion"] == "").all()

    # The pool is image_meta.json (keyed by file name) joined to churches.json through the church id
    # before the first "_"; churches.json lists no images, as the real file.
    churches = json.loads((root / "churches.json").read_text())
    image_meta = json.loads((root / "image_meta.json").read_text())
    assert all("images" not in info for info in churches.values())
    assert sorted(f"{i}.jpg" for i in manifest["image_id"]) == sorted(image_meta)
    assert manifest["image_id"].str.endswith("_wd1").sum() == 1  # a church with two photos
    for row in manifest.itertuples():
        assert row.church_id == row.image_id.split("_")[0]
        assert row.styles == "|".join(churches[row.church_id]["styles"])

    parts = json.loads((root / "building_parts.json").read_text())["annotations"]
    n_boxes = sum(len(g["elements"]) for entry in parts.values() for g in entry["bbox_groups"])
    n_negative = sum(e["left"] < 0 or e["top"] < 0 for entry in parts.values()
                     for g in entry["bbox_groups"] for e in g["elements"])
    assert list(annotations.columns) == ANNOTATION_COLUMNS
    assert len(annotations) == n_boxes and annotations["clamped"].sum() == n_negative > 0
    assert set(annotations["image_id"]) == set(manifest.loc[manifest["split"] == "annotated", "image_id"])
    assert set(annotations["feature"]) <= {m["name"] for m in META}
    for column in ("left", "top", "width", "height"):
        assert annotations[column].between(0, 1).all()
    assert ((annotations["left"] + annotations["width"]) <= 1).all()


def test_wikichurches_paths_stay_relative(sources, tmp_path, monkeypatch):
    shutil.copytree(sources / "churches", tmp_path / "resources" / "churches")
    monkeypatch.chdir(tmp_path)
    manifest = read_wikichurches("resources/churches").manifest
    assert manifest["path"].str.startswith("resources/churches/images/").all()


def test_wikichurches_malformed_json_names_file_and_position(copy):
    root = copy("churches")
    path = root / "building_parts.json"
    text = path.read_text()
    path.write_text(text[:500])
    with pytest.raises(ValueError, match=r"building_parts\.json: malformed JSON at line \d+, column \d+"):
        read_wikichurches(root)
    path.write_text(text)
    (root / "churches.json").unlink()
    with pytest.raises(FileNotFoundError, match="churches.json"):
        read_wikichurches(root)


@pytest.mark.parametrize("damage, reason", [
    (lambda p: p.unlink(), "missing image file"),
    (_truncate, "truncated image"),
    (lambda p: p.write_bytes(b"GIF89a broken"), "unreadable image: "),
])
def test_wikichurches_skips_bad_images(copy, damage, reason):
    root = copy("churches")
    parts = json.loads((root / "building_parts.json").read_text())["annotations"]
    annotated = next(iter(parts))
    pool = next(p.name for p in sorted((root / "images").glob("*.jpg")) if p.name not in parts)
    for name in (annotated, pool):
        damage(root / "images" / name)
    result = read_wikichurches(root)
    assert len(result.manifest) == 14
    assert result.skipped["file"].tolist() == [str(root / "images" / annotated), str(root / "images" / pool)]
    assert result.skipped["row"].tolist() == [annotated, pool]
    assert result.skipped["reason"].str.startswith(reason).all()
    assert annotated.removesuffix(".jpg") not in set(result.annotations["image_id"])


def test_wikichurches_boxes_clamped_or_skipped(copy):
    root = copy("churches")
    path = root / "building_parts.json"
    data = json.loads(path.read_text())
    name = next(iter(data["annotations"]))
    # Dyadic fractions, so the clamped values are exact in binary floating point.
    data["annotations"][name]["bbox_groups"] = [{"group_label": 0, "elements": [
        {"left": -0.0625, "top": 0.5, "width": 0.25, "height": 0.125, "label": 2},
        {"left": 0.25, "top": 0.25, "width": 0.0, "height": 0.125, "label": 2},
        {"left": 1.25, "top": 0.25, "width": 0.125, "height": 0.125, "label": 2},
        {"left": 0.875, "top": -0.125, "width": 0.25, "height": 0.5, "label": 5},
        {"left": 0.5, "top": -0.5, "width": 0.25, "height": 0.25, "label": 4},
    ]}]
    path.write_text(json.dumps(data))
    result = read_wikichurches(root)
    boxes = result.annotations[result.annotations["image_id"] == name.removesuffix(".jpg")]
    assert boxes[["box_id", "feature", "left", "top", "width", "height", "clamped"]].to_dict("records") == [
        {"box_id": 0, "feature": "Round-arch window", "left": 0.0, "top": 0.5, "width": 0.1875,
         "height": 0.125, "clamped": True},
        {"box_id": 3, "feature": "Pointed-arch portal", "left": 0.875, "top": 0.0, "width": 0.125,
         "height": 0.375, "clamped": True},
    ]
    skipped = result.skipped.set_index("row")
    assert set(skipped["file"]) == {str(path)}
    assert skipped.loc[f"{name} bbox_groups[0].elements[1]", "reason"].startswith("zero-area box")
    assert skipped.loc[f"{name} bbox_groups[0].elements[2]", "reason"].startswith("box outside the image")
    assert skipped.loc[f"{name} bbox_groups[0].elements[4]", "reason"].startswith("box outside the image")


def test_wikichurches_style_label_takes_the_first_known_style(copy):
    root = copy("churches")
    path = root / "churches.json"
    churches = json.loads(path.read_text())
    parts = json.loads((root / "building_parts.json").read_text())["annotations"]
    pool_church = next(q for q in churches if f"{q}_wd0.jpg" not in parts)
    other = next(q for q in churches if q != pool_church and f"{q}_wd0.jpg" not in parts)
    churches[pool_church]["styles"] = ["Q186363"]  # Gothic Revival only: none of the four
    churches[other]["styles"] = ["Q186363", "Q840829", "Q46261"]
    path.write_text(json.dumps(churches))
    manifest = read_wikichurches(root).manifest.set_index("church_id")
    assert set(manifest.loc[[pool_church], "style_label"]) == {""}
    assert set(manifest.loc[[other], "style_label"]) == {"Baroque"}
    assert set(manifest.loc[[other], "styles"]) == {"Q186363|Q840829|Q46261"}


# ---- OSV-5M -----------------------------------------------------------------------------------
def test_osv5m_manifest_keeps_columns_namibia_and_empty_text(sources):
    root = sources / "streets"
    result = read_osv5m(root)
    manifest = result.manifest
    columns = list(OSV5M_COLUMNS)
    columns.insert(columns.index("country") + 1, "country_in_file")  # "NMB" stays visible there
    assert list(manifest.columns) == ["image_id", "path", "split"] + columns
    assert len(manifest) == 24 and len(result.skipped) == 0 and result.annotations is None
    assert (manifest["split"] == "test").all() and (manifest["image_id"] == manifest["id"]).all()
    namibia = manifest[manifest["country"] == "NA"]
    assert len(namibia) > 0 and (namibia["unique_country"] == "NA").all()
    assert (manifest["sub-region"] == "").any() and manifest["sub-region"].notna().all()
    assert manifest["latitude"].dtype == float and manifest["climate"].dtype.kind == "i"
    assert manifest["path"].map(lambda p: p.startswith(str(root / "images" / "test" / "00"))).all()


def test_osv5m_keeps_na_like_names_through_parquet(copy, tmp_path):
    root = copy("streets")
    table = read_csv_keep_na(root / "test.csv", dtype=str)
    table.loc[0, ["country", "city", "sub-region"]] = ["NA", "Nan", None]  # Nan is a Thai city
    table.to_csv(root / "test.csv", index=False)
    result = read_osv5m(root)
    write_manifest_outputs(result, tmp_path / "m.parquet")
    back = pd.read_parquet(tmp_path / "m.parquet")
    assert back.loc[0, ["country", "city", "sub-region"]].tolist() == ["NA", "Nan", ""]


def test_osv5m_missing_columns_raise_naming_the_file(copy):
    root = copy("streets")
    table = read_csv_keep_na(root / "test.csv", dtype=str).drop(columns=["country", "sub-region"])
    table.to_csv(root / "test.csv", index=False)
    with pytest.raises(ValueError, match=r"test\.csv: missing required columns \['country', 'sub-region'\]"):
        read_osv5m(root)
    with pytest.raises(FileNotFoundError, match=r"train\.csv"):
        read_osv5m(root, split="train")


def test_osv5m_skips_bad_rows_and_images(copy):
    root = copy("streets")
    table = read_csv_keep_na(root / "test.csv", dtype=str)
    ids = table["id"].tolist()
    (root / "images" / "test" / "00" / f"{ids[1]}.jpg").unlink()
    _truncate(root / "images" / "test" / "00" / f"{ids[2]}.jpg")
    table.loc[3, "latitude"] = None
    table.loc[4, "id"] = ids[0]
    table.to_csv(root / "test.csv", index=False)
    result = read_osv5m(root)
    assert len(result.manifest) == 20
    records = result.skipped.to_dict("records")
    assert [r["row"] for r in records] == [f"line 3 (id={ids[1]})", f"line 4 (id={ids[2]})",
                                           f"line 5 (id={ids[3]})", f"line 6 (id={ids[0]})"]
    assert [r["reason"] for r in records] == ["missing image file", "truncated image",
                                              "missing latitude/longitude", "duplicate id"]
    assert records[0]["file"].endswith(f"{ids[1]}.jpg")
    assert records[1]["file"] == str(root / "images" / "test" / "00" / f"{ids[2]}.jpg")
    assert records[2]["file"] == str(root / "test.csv")


# ---- captions ---------------------------------------------------------------------------------
def test_captions_manifest(sources):
    root = sources / "captions"
    result = read_captions(root)
    manifest = result.manifest
    assert list(manifest.columns) == ["image_id", "path", "split", "caption", "entity", "language",
                                      "country_true"]
    assert len(manifest) == 20 and len(result.skipped) == 0
    assert (manifest["split"] == "all").all()
    assert "NA" in set(manifest["country_true"])
    assert manifest["path"].tolist() == [str(root / "images" / f"{i}.jpg") for i in manifest["image_id"]]


def test_captions_subsets_bad_images_and_missing_columns(copy):
    root = copy("captions")
    table = read_csv_keep_na(root / "captions.csv", dtype=str)
    table["subset"] = ["geo"] * 10 + [""] * 10
    table.to_csv(root / "captions.csv", index=False)
    (root / "images" / f"{table.loc[0, 'id']}.jpg").unlink()
    (root / "images" / f"{table.loc[5, 'id']}.jpg").write_bytes(b"")
    result = read_captions(root)
    assert result.manifest["split"].value_counts().to_dict() == {"all": 10, "geo": 8}
    assert result.skipped["row"].tolist() == [f"line 2 (id={table.loc[0, 'id']})",
                                              f"line 7 (id={table.loc[5, 'id']})"]
    assert result.skipped["reason"].tolist()[0] == "missing image file"
    assert result.skipped["reason"].tolist()[1].startswith("unreadable image")
    table.drop(columns=["caption"]).to_csv(root / "captions.csv", index=False)
    with pytest.raises(ValueError, match=r"captions\.csv: missing required columns \['caption'\]"):
        read_captions(root)
    # language, country, entity, image and subset are optional (issue #7)
    table.drop(columns=["language", "country", "entity"]).to_csv(root / "captions.csv", index=False)
    assert set(read_captions(root).manifest["language"]) == {""}


def test_wikichurches_invalid_boxes_and_labels_become_skip_records(copy):
    root = copy("churches")
    path = root / "building_parts.json"
    data = json.loads(path.read_text())
    first, second = list(data["annotations"])[:2]
    good = {"left": 0.25, "top": 0.25, "width": 0.25, "height": 0.25, "label": 2}
    bad = [{**good, "left": float("nan")}, {**good, "width": float("inf")},
           {**good, "top": "0.25"}, {**good, "label": -1}, {**good, "label": len(META)},
           {**good, "label": True}, {**good, "label": "Spire"}, {k: v for k, v in good.items() if k != "height"}]
    data["annotations"][first]["bbox_groups"] = [{"group_label": 0, "elements": bad + [good]}]
    data["annotations"][second]["bbox_groups"] = [{"group_label": 0, "elements": bad[:2]}]
    path.write_text(json.dumps(data))  # Python's json writes NaN and Infinity; json.loads reads them
    assert "NaN" in path.read_text() and "Infinity" in path.read_text()

    result = read_wikichurches(root)
    boxes = result.annotations.groupby("image_id")["box_id"].apply(list).to_dict()
    assert boxes[first.removesuffix(".jpg")] == [8]  # only the good one, still pointing into the JSON
    assert second.removesuffix(".jpg") not in boxes
    skipped = result.skipped.set_index("row")["reason"].to_dict()
    assert set(result.skipped["file"]) == {str(path)}
    reasons = [skipped[f"{first} bbox_groups[0].elements[{e}]"] for e in range(len(bad))]
    assert reasons == [
        "coordinate left=nan is not finite", "coordinate width=inf is not finite",
        "coordinate top='0.25' is not a number",
        f"label -1 is not an index into building_parts.json's meta (0..{len(META) - 1})",
        f"label {len(META)} is not an index into building_parts.json's meta (0..{len(META) - 1})",
        f"label True is not an index into building_parts.json's meta (0..{len(META) - 1})",
        f"label 'Spire' is not an index into building_parts.json's meta (0..{len(META) - 1})",
        "missing coordinate 'height'"]
    # the image left with no usable box is recorded (it stays in the manifest, held out, unscored)
    assert skipped[second].startswith("annotated image left with no usable box (2 skipped)")
    assert first not in skipped
    manifest = result.manifest.set_index("image_id")
    assert manifest.loc[second.removesuffix(".jpg"), "split"] == "annotated"


def test_wikichurches_pool_needs_the_church_in_churches_json(copy):
    root = copy("churches")
    meta_path = root / "image_meta.json"
    image_meta = json.loads(meta_path.read_text())
    image_meta["Q1_wd0.jpg"] = {}  # a church churches.json does not know
    meta_path.write_text(json.dumps(image_meta))
    result = read_wikichurches(root)
    assert len(result.manifest) == 16
    assert result.skipped.to_dict("records") == [
        {"file": str(meta_path), "row": "Q1_wd0.jpg", "reason": "church Q1 is not in churches.json (no styles)"}]
    meta_path.write_text("[]")
    with pytest.raises(ValueError, match=r"image_meta\.json: expected an object keyed by image file name"):
        read_wikichurches(root)
    meta_path.unlink()
    with pytest.raises(FileNotFoundError, match=r"image_meta\.json"):
        read_wikichurches(root)


def test_wikichurches_annotated_image_without_boxes_is_recorded(copy):
    root = copy("churches")
    path = root / "building_parts.json"
    data = json.loads(path.read_text())
    name = next(iter(data["annotations"]))
    data["annotations"][name]["bbox_groups"] = []
    path.write_text(json.dumps(data))
    result = read_wikichurches(root)
    assert result.skipped.to_dict("records") == [
        {"file": str(path), "row": name, "reason": "annotated image has no boxes: it takes no part in scoring"}]
    assert name.removesuffix(".jpg") in set(result.manifest["image_id"])
