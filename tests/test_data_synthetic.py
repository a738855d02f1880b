"""Synthetic generators: deterministic per seed, real formats, and the signals they promise."""

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy.stats import f_oneway

from encoderlens.data.places import load_places, sample_places
from encoderlens.data.synthetic_captions import write_synthetic_captions
from encoderlens.data.synthetic_churches import STYLES, render_church, write_synthetic_churches
from encoderlens.data.synthetic_streets import OSV5M_COLUMNS, write_synthetic_streets


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("write, n", [(write_synthetic_churches, 10), (write_synthetic_streets, 12),
                                      (write_synthetic_captions, 10)])
def test_generators_are_deterministic_per_seed(tmp_path, write, n):
    write(tmp_path / "a", n_images=n, seed=3)
    write(tmp_path / "b", n_images=n, seed=3)
    write(tmp_path / "c", n_images=n, seed=4)
    a, b, c = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert a == b
    assert sum(name.endswith(".jpg") for name in a) == n
    # Another seed gives other pictures (names may coincide, contents may not).
    assert sorted(v for k, v in a.items() if k.endswith(".jpg")) != \
        sorted(v for k, v in c.items() if k.endswith(".jpg"))


def test_generators_handle_a_single_image(tmp_path):
    write_synthetic_churches(tmp_path / "ch", n_images=1)
    write_synthetic_streets(tmp_path / "st", n_images=1)
    write_synthetic_captions(tmp_path / "cap", n_images=1)
    assert len(list((tmp_path / "ch" / "images").glob("*.jpg"))) == 1
    assert pd.read_csv(tmp_path / "st" / "test.csv", keep_default_na=False)["country"].tolist() == ["NA"]


def test_church_files_follow_the_wikichurches_layout(tmp_path):
    write_synthetic_churches(tmp_path, n_images=20, seed=0)
    parts = json.loads((tmp_path / "building_parts.json").read_text())
    churches = json.loads((tmp_path / "churches.json").read_text())
    assert {"name", "parents"} <= set(parts["meta"][0])
    assert len(parts["annotations"]) == 10
    for name, entry in parts["annotations"].items():
        assert name.endswith("_wd0.jpg") and (tmp_path / "images" / name).is_file()
        element = entry["bbox_groups"][0]["elements"][0]
        assert set(element) == {"left", "top", "width", "height", "label"}
        assert isinstance(element["label"], int)
    lefts = [e["left"] for entry in parts["annotations"].values()
             for g in entry["bbox_groups"] for e in g["elements"]]
    assert any(-0.05 < v < 0 for v in lefts)  # a few small negative coordinates, as in the real file
    # churches.json in the real schema (ssl_wikichurches' data notebook prints it): no image list
    for qid, info in churches.items():
        assert set(info) == {"id", "name", "built_year", "styles", "country", "location"}
        assert info["id"] == qid and set(info["country"]) == {"id", "name"}
        assert set(info["location"]) == {"lat", "lon"}
        assert info["built_year"] is None or isinstance(info["built_year"], (int, list))
        assert set(info["styles"]) - {"Q186363"} <= set(STYLES)
    assert {type(info["built_year"]) for info in churches.values()} >= {int, type(None)}
    # the image list is image_meta.json, keyed by file name; the church is the name before the "_"
    image_meta = json.loads((tmp_path / "image_meta.json").read_text())
    assert set(image_meta) == {p.name for p in (tmp_path / "images").glob("*.jpg")}
    assert {name.split("_", 1)[0] for name in image_meta} == set(churches)
    # style_names.txt: "QID name", split once on whitespace (names contain spaces)
    lines = (tmp_path / "style_names.txt").read_text().splitlines()
    names = dict(line.split(None, 1) for line in lines)
    assert {q: names[q] for q in STYLES} == STYLES and names["Q186363"] == "Gothic Revival Architecture"


def _box_mask(boxes, height, width):
    mask = np.zeros((height, width), bool)
    for x0, y0, x1, y1, _ in boxes:
        mask[max(y0, 0):y1, max(x0, 0):x1] = True
    return mask


@pytest.mark.parametrize("edge_box", [False, True])
def test_church_style_shows_only_inside_the_boxes(edge_box):
    for layout in range(6):
        renders = {s: render_church([11, layout], s, edge_box=edge_box) for s in STYLES}
        boxes = renders["Q46261"][1]
        assert all(r[1] == boxes for r in renders.values())  # layout does not depend on style
        mask = _box_mask(boxes, 144, 192)
        assert 0.04 < mask.mean() < 0.4
        images = [r[0].astype(int) for r in renders.values()]
        for i, a in enumerate(images):
            for b in images[i + 1:]:
                # Outside the boxes: the very same pixels whatever the style.
                assert np.array_equal(a[~mask], b[~mask])
                # Inside: the style's parts differ visibly.
                assert np.abs(a[mask] - b[mask]).mean() > 5


def test_church_pixels_outside_boxes_do_not_predict_style(tmp_path):
    # On the saved JPEGs (compression bleeds a few pixels across box edges, so boxes are padded).
    from encoderlens.data.wikichurches import read_wikichurches

    write_synthetic_churches(tmp_path, n_images=48, seed=1, n_annotated=48)
    result = read_wikichurches(tmp_path)
    outside, inside = [], []
    for row in result.manifest.itertuples():
        pixels = np.asarray(Image.open(row.path).convert("L"), float)
        mask = np.zeros(pixels.shape, bool)
        for box in result.annotations[result.annotations.image_id == row.image_id].itertuples():
            x0, y0 = int(box.left * 192) - 8, int(box.top * 144) - 8
            mask[max(y0, 0):int((box.top + box.height) * 144) + 8,
                 max(x0, 0):int((box.left + box.width) * 192) + 8] = True
        outside.append(pixels[~mask].mean())
        inside.append(pixels[mask].mean())
    frame = pd.DataFrame({"style": result.manifest["style_label"], "outside": outside, "inside": inside})
    groups = [group for _, group in frame.groupby("style")]
    assert len(groups) == 4
    # One-way ANOVA over the four styles: no detectable style effect outside the boxes, a clear
    # one inside them (the arch shapes change how much dark glass a box holds).
    assert f_oneway(*[g["outside"] for g in groups]).pvalue > 0.05
    assert f_oneway(*[g["inside"] for g in groups]).pvalue < 0.01


def test_street_appearance_carries_latitude(tmp_path):
    write_synthetic_streets(tmp_path, n_images=80, seed=2, planted=False)  # the cast would mask the sky
    table = pd.read_csv(tmp_path / "test.csv", keep_default_na=False, dtype={"id": str})
    blueness = []
    for image_id in table["id"]:
        pixels = np.asarray(Image.open(tmp_path / "images" / "test" / "00" / f"{image_id}.jpg"), float)
        top = pixels[: pixels.shape[0] // 4]
        blueness.append((top[..., 2] - top[..., 0]).mean())
    r = np.corrcoef(blueness, table["latitude"].abs())[0, 1]
    assert r < -0.5  # deep blue skies near the equator, pale ones towards the poles
    assert r > -0.98  # but not a deterministic function of latitude: noise is there


def test_street_table_has_osv5m_columns_and_real_places(tmp_path):
    write_synthetic_streets(tmp_path, n_images=40, seed=0)
    table = pd.read_csv(tmp_path / "test.csv", keep_default_na=False, dtype=str)
    assert list(table.columns) == OSV5M_COLUMNS
    assert {"NA", "NMB"} <= set(table["country"])  # Namibia spelt both ways, as in OSV-5M
    country = table["country"].replace("NMB", "NA")
    assert country.nunique() == 10  # about four images per country
    places = load_places()
    known = set(zip(places["cc"], places["admin1"], places["name"]))
    assert all(k in known for k in zip(country, table["region"], table["city"]))
    assert set(table["drive_side"]) <= {"0", "1"}
    assert table.loc[country == "NA", "drive_side"].eq("1").all()


def test_captions_name_real_populous_cities(tmp_path):
    write_synthetic_captions(tmp_path, n_images=60, seed=0)
    table = pd.read_csv(tmp_path / "captions.csv", keep_default_na=False, dtype=str)
    assert list(table.columns) == ["id", "caption", "entity", "language", "country", "image"]
    assert "NA" in set(table["country"])
    assert set(table["language"]) - {"en"}  # some non-English captions
    assert set(table["entity"]) <= {"house", "car", "church", ""}
    cities = load_places(min_population=10_000)
    names = cities.groupby("cc")["name"].apply(set)
    assert all(any(name in caption for name in names[cc])
               for caption, cc in zip(table["caption"], table["country"]))


def test_places_keep_namibia_and_stratify_countries():
    places = load_places()
    assert (places["cc"] == "NA").sum() > 10  # read with keep_default_na=False
    assert (places["admin2"] == "").any() and places["admin2"].notna().all()
    sample = sample_places(20, seed=5, n_countries=5)
    assert sample["cc"].value_counts().tolist() == [4] * 5
    assert "NA" in set(sample["cc"])
    assert sample.equals(sample_places(20, seed=5, n_countries=5))
    assert not sample.equals(sample_places(20, seed=6, n_countries=5))
    populous = load_places(min_population=100_000)
    assert populous["population"].min() >= 100_000 and "Windhoek" in set(populous["name"])
