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
    assert list(manifest.columns) == ["image_id", "path", "split", "church_id", "styles", "style_label"]
    assert len(manifest) == 16 and manifest["image_id"].is_unique and len(result.skipped) == 0
    assert manifest["split"].value_counts().to_dict() == {"annotated": 8, "pool": 8}
    assert set(manifest["style_label"]) == {"Romanesque", "Gothic", "Renaissance", "Baroque"}
    assert manifest["path"].str.startswith(str(root / "images") + "/").all()

    churches = json.loads((root / "churches.json").read_text())
    for row in manifest.itertuples():
        assert row.styles == "|".join(churches[row.church_id]["styles"])
        assert f"{row.image_id}.jpg" in churches[row.church_id]["images"]

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
        {"left": 0.875, "top": -0.125, "width": 0.25, "height": 0.5, "label": "Spire"},
        {"left": 0.5, "top": -0.5, "width": 0.25, "height": 0.25, "label": 4},
    ]}]
    path.write_text(json.dumps(data))
    result = read_wikichurches(root)
    boxes = result.annotations[result.annotations["image_id"] == name.removesuffix(".jpg")]
    assert boxes[["box_id", "feature", "left", "top", "width", "height", "clamped"]].to_dict("records") == [
        {"box_id": 0, "feature": "Round-arch window", "left": 0.0, "top": 0.5, "width": 0.1875,
         "height": 0.125, "clamped": True},
        {"box_id": 3, "feature": "Spire", "left": 0.875, "top": 0.0, "width": 0.125,
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
    pool_church = next(q for q, info in churches.items() if info["images"][0] not in parts)
    other = next(q for q in churches if q != pool_church and churches[q]["images"][0] not in parts)
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
