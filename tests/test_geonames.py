"""The places table: the offline package by default, or the GeoNames dump read in its own format."""

import zipfile

import pandas as pd
import pytest

from encoderlens.data.geonames import (PLACES_COLUMNS, offline_places, read_geonames_dump,
                                       write_places_table)

# two rows in the dump's own 19-column, tab-separated layout (no header)
DUMP_ROWS = [
    ["3356266", "Lüderitz", "Luderitz", "Luderitz,Lüderitzbucht", "-26.64807", "15.1594", "P", "PPLA",
     "NA", "", "37", "", "", "", "12537", "", "11", "Africa/Windhoek", "2019-09-05"],
    ["1608452", "Nan", "Nan", "Muang Nan,Nan", "18.78320", "100.77600", "P", "PPLA", "TH", "", "34",
     "9000", "", "", "80000", "", "199", "Asia/Bangkok", "2013-07-11"],
]
ADMIN1 = "NA.37\t//Karas\tKaras\t3371199\nTH.34\tNan\tNan\t1608451\n"
ADMIN2 = "TH.34.9000\tMueang Nan\tMueang Nan\t1608450\n"


def write_dump(folder):
    text = "\n".join("\t".join(row) for row in DUMP_ROWS) + "\n"
    cities = folder / "cities1000.zip"
    with zipfile.ZipFile(cities, "w") as archive:
        archive.writestr("cities1000.txt", text)
    (folder / "admin1CodesASCII.txt").write_text(ADMIN1)
    (folder / "admin2Codes.txt").write_text(ADMIN2)
    return cities


def test_the_dump_format_is_read_with_namibia_and_admin_names(tmp_path):
    cities = write_dump(tmp_path)
    places = read_geonames_dump(cities, tmp_path / "admin1CodesASCII.txt", tmp_path / "admin2Codes.txt")
    assert list(places.columns) == PLACES_COLUMNS
    assert places["cc"].tolist() == ["NA", "TH"]
    assert places["name"].tolist() == ["Lüderitz", "Nan"]
    assert places["admin1"].tolist() == ["//Karas", "Nan"]
    assert places["admin2"].tolist() == ["", "Mueang Nan"]
    assert places["population"].tolist() == [12537, 80000]
    assert places["latitude"].iloc[0] == pytest.approx(-26.64807)


def test_a_broken_dump_names_the_file_and_row(tmp_path):
    bad = tmp_path / "cities.txt"
    row = list(DUMP_ROWS[0])
    row[4] = "north"
    bad.write_text("\t".join(DUMP_ROWS[1]) + "\n" + "\t".join(row) + "\n")
    with pytest.raises(ValueError, match=r"cities.txt: row 2 has no numeric latitude"):
        read_geonames_dump(bad)


def test_the_offline_table_keeps_namibia_and_populations(tmp_path):
    write_places_table(tmp_path / "places.parquet", source="offline", min_population=10000)
    places = pd.read_parquet(tmp_path / "places.parquet")
    assert list(places.columns) == PLACES_COLUMNS
    assert (places["population"] >= 10000).all()
    assert "NA" in set(places["cc"])
    windhoek = places[(places["cc"] == "NA") & (places["name"] == "Windhoek")]
    assert len(windhoek) == 1 and windhoek["latitude"].iloc[0] == pytest.approx(-22.56, abs=0.05)
    assert len(offline_places(0)) > len(places)


def test_the_dump_source_downloads_the_tables_from_the_server(tmp_path):
    from httpserver import serve

    source = tmp_path / "source"
    source.mkdir()
    write_dump(source)
    files = {f"export/dump/{path.name}": path.read_bytes() for path in source.iterdir()}
    with serve(files) as server:
        dest = tmp_path / "out" / "places.parquet"
        write_places_table(dest, source="dump", dump_url=server.url("export/dump/cities1000.zip"),
                           min_population=20000)
        fetched = sorted(request.path for request in server.requests)
    assert fetched == ["export/dump/admin1CodesASCII.txt", "export/dump/admin2Codes.txt",
                       "export/dump/cities1000.zip"]
    places = pd.read_parquet(dest)
    assert places["name"].tolist() == ["Nan"]  # Lüderitz (12,537) is under the population floor
    assert places["admin2"].tolist() == ["Mueang Nan"]
