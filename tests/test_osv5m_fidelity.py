"""OSV-5M as OSV-5M makes it: admin labels from reverse_geocoder's full table and nearest-place rule,
hierarchical `unique_*` keys with their literal "NaN", `cell` as text, Namibia as "NA" or "NMB",
coordinates outside the globe as skip records; GeoNames dumps per country and in chunks.

Evidence: github.com/gastruc/osv5m (scripts/preprocessing/enrich-metadata.py labels with
`reverse_geocoder.search`; fix_namimbia.py writes "NMB"; metrics/utils.py builds the predicted keys
name_admin2_admin1_cc), the hub loader's printed test.csv row ("(0, 8)",
"Waitangi_NaN_Chatham Islands_NZ", an empty unique_sub-region), GeoNames' readme (columns, XX.zip,
cities1000 = population > 1000 or seats down to PPLA3).
"""

import zipfile

import numpy as np
import pandas as pd
import pytest

from encoderlens.data.geonames import (ADMIN_COLUMNS, PLACES_COLUMNS, admin_places, offline_places,
                                       read_dump_tables, read_geonames_dump, write_places_table)
from encoderlens.data.manifest import read_csv_keep_na
from encoderlens.data.osv5m import build_key, level_keys, read_osv5m
from encoderlens.data.synthetic_streets import write_synthetic_streets
from encoderlens.geo.places_lookup import PlaceIndex, admin_accuracy, predicted_places
from encoderlens.geo.job import ADMIN_LEVELS


# ---- 5: admin accuracy against reverse_geocoder's labels -----------------------------------------
def _osv5m_labelled_points(n, seed, jitter_degrees):
    """Points near places of reverse_geocoder's table, labelled as OSV-5M labelled its images:
    `reverse_geocoder.search` in its default mode (enrich-metadata.py)."""
    import reverse_geocoder

    table = admin_places()
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(table), n, replace=False)
    points = table.iloc[rows][["latitude", "longitude"]].to_numpy()
    points = points + rng.uniform(-jitter_degrees, jitter_degrees, (n, 2))
    found = reverse_geocoder.search([tuple(p) for p in points], verbose=False)
    truth = pd.DataFrame({"country": [f["cc"] for f in found], "region": [f["admin1"] for f in found],
                          "sub-region": [f["admin2"] for f in found], "city": [f["name"] for f in found]})
    return points, truth


def _accuracy(points, truth, table, rule):
    result = admin_accuracy(predicted_places(points, table, rule=rule), truth, ADMIN_LEVELS)
    if rule == "reverse_geocoder":  # every present label is compared
        assert all(result[level]["compared"] == (truth[level] != "").sum() for level in ADMIN_LEVELS)
    return {level: result[level]["accuracy"] for level in ADMIN_LEVELS}


def test_exact_predictions_on_osv5m_labelled_points_score_one_at_every_level():
    table = admin_places()
    assert list(table.columns) == ADMIN_COLUMNS and len(table) == 144_563  # every row, no floor
    ones = dict.fromkeys(ADMIN_LEVELS, 1.0)
    # a few metres from a place (4e-5 degrees is at most 4.4 m in latitude)
    points, truth = _osv5m_labelled_points(2000, 0, 4e-5)
    assert _accuracy(points, truth, table, "reverse_geocoder") == ones
    old = _accuracy(points, truth, offline_places(0), "great_circle")  # the lookup before
    assert old["city"] < 0.8 and old["country"] < 1.0
    # up to 0.1 degree (about 11 km) away, where images are: the nearest-place rule matters too
    points, truth = _osv5m_labelled_points(2000, 1, 0.1)
    assert _accuracy(points, truth, table, "reverse_geocoder") == ones
    great_circle = _accuracy(points, truth, table, "great_circle")
    assert great_circle["city"] < 0.95 and great_circle["region"] < 1.0


def test_the_reverse_geocoder_rule_is_its_degree_tree_not_great_circle():
    # at 60N, A is 1.8 degrees of longitude east (100 km), B 1.2 degrees of latitude north (133 km):
    # great-circle picks A, reverse_geocoder's tree on raw degrees picks B
    places = pd.DataFrame({"name": ["A", "B"], "latitude": [60.0, 61.2], "longitude": [1.8, 0.0]})
    point = np.array([[60.0, 0.0]])
    assert PlaceIndex(places).query(point)[0].tolist() == [0]
    index, distance = PlaceIndex(places, rule="reverse_geocoder").query(point)
    assert index.tolist() == [1] and distance[0] == pytest.approx(133.4, abs=0.2)
    with pytest.raises(ValueError, match="unknown nearest-place rule"):
        PlaceIndex(places, rule="flat")


# ---- 5, 8, #21.3: GeoNames dumps -------------------------------------------------------------------
DUMP_ROWS = [
    ["3356266", "Lüderitz", "Luderitz", "Luderitz,Lüderitzbucht", "-26.64807", "15.1594", "P", "PPLA",
     "NA", "", "37", "", "", "", "12537", "", "11", "Africa/Windhoek", "2019-09-05"],
    ["3352136", "Windhoek", "Windhoek", "", "-22.55941", "17.08323", "P", "PPLC", "NA", "", "21", "",
     "", "", "268132", "", "1725", "Africa/Windhoek", "2019-09-05"],
    ["3356213", "Maltahöhe", "Maltahohe", "", "-24.83333", "16.98333", "P", "PPL", "NA", "", "39",
     "", "", "", "600", "", "1380", "Africa/Windhoek", "2019-09-05"],
    ["3357003", "Brandberg", "Brandberg", "", "-21.15", "14.55", "T", "MT", "NA", "", "38", "", "",
     "", "0", "", "2573", "Africa/Windhoek", "2019-09-05"],
    ["3354077", "Opuwo", "Opuwo", "", "-18.06067", "13.84", "P", "PPLA", "NA", "", "38", "", "", "",
     "12000", "", "1187", "Africa/Windhoek", "2019-09-05"],
]
ADMIN1 = ("NA.37\t//Karas\tKaras\t3371199\nNA.21\tKhomas\tKhomas\t3352137\n"
          "NA.39\tHardap\tHardap\t3357114\nNA.38\tKunene\tKunene\t3371204\n")


def _dump_text(rows):
    return "\n".join("\t".join(row) for row in rows) + "\n"


def test_a_country_zip_with_its_readme_is_read_and_the_admin_table_is_ascii(tmp_path):
    archive = tmp_path / "NA.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("readme.txt", "Readme for GeoNames Gazetteer extract files\n\tnot a row\n")
        handle.writestr("NA.txt", _dump_text(DUMP_ROWS))
    (tmp_path / "admin1CodesASCII.txt").write_text(ADMIN1)
    places, admin = read_dump_tables(archive, tmp_path / "admin1CodesASCII.txt", None)
    assert list(places.columns) == PLACES_COLUMNS and len(places) == 5
    assert places["admin1"].tolist()[0] == "//Karas"  # the gazetteer keeps the UTF-8 names
    # the admin lookup is reverse_geocoder's: asciiname, ASCII admin names, cities1000's rows
    # (a mountain and a village of 600 that is no seat are not in cities1000)
    assert list(admin.columns) == ADMIN_COLUMNS
    assert admin["name"].tolist() == ["Luderitz", "Windhoek", "Opuwo"]
    assert admin["admin1"].tolist() == ["Karas", "Khomas", "Kunene"]
    assert admin["cc"].tolist() == ["NA"] * 3


def test_the_dump_is_read_in_chunks_with_the_same_result(tmp_path):
    dump = tmp_path / "allCountries.txt"
    dump.write_text(_dump_text(DUMP_ROWS * 7))
    whole = read_dump_tables(dump, min_population=10_000, chunk_rows=1_000)
    for chunk_rows in (1, 3, 8):
        chunked = read_dump_tables(dump, min_population=10_000, chunk_rows=chunk_rows)
        pd.testing.assert_frame_equal(chunked[0], whole[0])
        pd.testing.assert_frame_equal(chunked[1], whole[1])
    assert len(whole[0]) == 21 and len(whole[1]) == 21
    assert read_geonames_dump(dump, chunk_rows=2)["name"].tolist() == [r[1] for r in DUMP_ROWS * 7]


@pytest.mark.parametrize("column, value, problem", [
    (4, "91.5", "latitude outside"), (5, "-180.5", "longitude outside"), (4, "north", "no numeric")])
def test_a_dump_row_off_the_globe_is_an_error_naming_file_and_row(tmp_path, column, value, problem):
    rows = [list(r) for r in DUMP_ROWS]
    rows[3][column] = value
    dump = tmp_path / "cities1000.txt"
    dump.write_text(_dump_text(rows))
    with pytest.raises(ValueError, match=rf"cities1000.txt: row 4 has {problem}"):
        read_dump_tables(dump, chunk_rows=2)


def test_the_offline_admin_table_is_written_beside_the_places(tmp_path):
    write_places_table(tmp_path / "places.parquet", source="offline", min_population=1000,
                       admin_dest=tmp_path / "admin.parquet")
    admin = pd.read_parquet(tmp_path / "admin.parquet")
    assert len(admin) == 144_563 and len(pd.read_parquet(tmp_path / "places.parquet")) == 101_127
    paris = admin[(admin["cc"] == "FR") & (admin["name"] == "Paris")]
    assert paris["admin1"].tolist() == ["Ile-de-France"]  # ASCII, as OSV-5M's labels
    assert (admin["cc"] == "NA").sum() > 10


# ---- 6, 7, #21.3: the OSV-5M table ---------------------------------------------------------------
def test_keys_join_parents_with_nan_for_missing_parts():
    table = pd.DataFrame({
        "country": ["NZ", "MG", "BB", "VC", "BB"],
        "region": ["Chatham Islands", "Boeny", "Saint Andrew", "Saint Andrew", ""],
        "sub-region": ["", "", "", "", ""],
        "city": ["Waitangi", "Sitampiky", "Belleplaine", "Layou", ""]})
    assert build_key(table, "city").tolist() == [
        "Waitangi_NaN_Chatham Islands_NZ", "Sitampiky_NaN_Boeny_MG", "Belleplaine_NaN_Saint Andrew_BB",
        "Layou_NaN_Saint Andrew_VC", ""]
    assert build_key(table, "sub-region").tolist() == [""] * 5
    labels = level_keys(table, ["country", "region", "sub-region", "city"])
    # one parish name, two countries: two classes
    assert labels["region"].tolist()[2:4] == ["Saint Andrew_BB", "Saint Andrew_VC"]
    assert labels["region"].nunique() == 5 and labels.loc[4, "region"] == ""
    # the file's own keys win where present; a key that is just "NaN" is missing
    given = table.assign(**{"unique_region": ["Chatham Islands_NZ", "Boeny_MG", "X_BB", "NaN", ""]})
    assert level_keys(given, ["region"])["region"].tolist() == [
        "Chatham Islands_NZ", "Boeny_MG", "X_BB", "Saint Andrew_VC", ""]


def test_synthetic_streets_write_osv5m_keys_cells_and_both_namibias(tmp_path):
    write_synthetic_streets(tmp_path, n_images=24, seed=0)
    raw = pd.read_csv(tmp_path / "test.csv", keep_default_na=False, dtype=str)
    assert raw["cell"].str.fullmatch(r"\(\d+, \d+\)").all()
    assert raw["cell"].tolist() == [f"({a}, {b})" for a, b in zip(raw["lon_bin"], raw["lat_bin"])]
    assert {"NA", "NMB"} <= set(raw["country"])
    no_sub = raw[raw["sub-region"] == ""]
    assert len(no_sub) and (no_sub["unique_sub-region"] == "").all()
    assert no_sub["unique_city"].str.contains("_NaN_").all()
    assert (no_sub["unique_city"] == no_sub["city"] + "_NaN_" + no_sub["region"] + "_"
            + no_sub["country"]).all()
    # a pandas default read turns "NaN" parts and "NA" into missing values; ours keeps them
    assert pd.read_csv(tmp_path / "test.csv")["country"].isna().any()

    result = read_osv5m(tmp_path)
    manifest = result.manifest
    assert len(result.skipped) == 0 and "NMB" not in set(manifest["country"])
    namibia = manifest[manifest["country"] == "NA"]
    assert set(namibia["country_in_file"]) == {"NA", "NMB"}
    assert (namibia["unique_country"] == "NA").all() and namibia["unique_region"].str.endswith("_NA").all()
    assert manifest["cell"].tolist() == raw["cell"].tolist()
    assert manifest["unique_city"].tolist()[0].count("_") >= 3


def test_coordinates_off_the_globe_are_skip_records(tmp_path):
    write_synthetic_streets(tmp_path, n_images=6, seed=1)
    table = read_csv_keep_na(tmp_path / "test.csv", dtype=str)
    ids = table["id"].tolist()
    table.loc[1, "latitude"] = "90.5"
    table.loc[3, "longitude"] = "-181"
    table.loc[4, "latitude"] = "inf"
    table.to_csv(tmp_path / "test.csv", index=False)
    result = read_osv5m(tmp_path)
    assert result.manifest["image_id"].tolist() == [ids[0], ids[2], ids[5]]
    records = result.skipped.to_dict("records")
    assert [r["row"] for r in records] == [f"line 3 (id={ids[1]})", f"line 5 (id={ids[3]})",
                                           f"line 6 (id={ids[4]})"]
    assert [r["reason"] for r in records] == ["latitude 90.5 outside [-90, 90]",
                                              "longitude -181 outside [-180, 180]",
                                              "latitude inf outside [-90, 90]"]
    assert all(r["file"] == str(tmp_path / "test.csv") for r in records)


def test_the_places_table_is_streamed_to_parquet_chunk_by_chunk(tmp_path):
    from encoderlens.data.geonames import _stream_dump_tables, iter_dump_tables

    dump = tmp_path / "allCountries.txt"
    dump.write_text(_dump_text(DUMP_ROWS * 3))
    places, admin = read_dump_tables(dump, min_population=10_000)
    for floor, expected in ((10_000, places), (10**9, places.iloc[:0])):
        got_admin, written = _stream_dump_tables(iter_dump_tables(dump, min_population=floor, chunk_rows=2),
                                                 tmp_path / "places.parquet")
        back = pd.read_parquet(tmp_path / "places.parquet")
        assert written == len(expected) and list(back.columns) == PLACES_COLUMNS
        pd.testing.assert_frame_equal(back, expected.reset_index(drop=True), check_dtype=False,
                                      check_index_type=False)
        pd.testing.assert_frame_equal(got_admin, admin)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["allCountries.txt", "places.parquet"]  # no .tmp
