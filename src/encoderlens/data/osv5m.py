"""Reader for OSV-5M (OpenStreetView-5M), real or synthetic.

Expected layout, as the dataset ships it once its zips are unpacked:

    root/<split>.csv                   one row per image, OSV-5M's 26 columns
    root/images/<split>/<folder>/<id>.jpg   (folders 00, 01, ...; any depth is searched)

The manifest keeps every CSV column under its own name (`country`, `region`, `sub-region`, `city`,
`latitude`, `longitude`, `cell`, `land_cover`, `climate`, `soil`, ...) after image_id (= id, as a
string), path and split, plus `country_in_file` (the country code as the file spells it). Text is
read with keep_default_na=False: "NA" stays Namibia, an empty sub-region stays "", and the literal
"NaN" inside OSV-5M's keys stays text. Rows without coordinates, a latitude outside ±90 or a longitude
outside ±180, duplicate ids and missing or undecodable images become skip records; a CSV lacking a
required column raises ValueError naming the file.

OSV-5M's conventions, as its preprocessing writes them (github.com/gastruc/osv5m,
scripts/preprocessing/) and its hub loader shows them:
- `country`, `region`, `sub-region`, `city` are reverse_geocoder's `cc`, `admin1`, `admin2`, `name`
  (ASCII GeoNames names) of the image's nearest place.
- `unique_region`, `unique_sub-region`, `unique_city` join a level's name with its coarser levels
  and the country code, "_"-separated; a missing coarser part is the literal "NaN"
  ("Waitangi_NaN_Chatham Islands_NZ", "Sitampiky_NaN_Boeny_MG"), and a level whose own name is
  missing has an empty key. These keys, not the bare names, are the classes ("Saint Andrew" is a
  parish of Barbados and of Saint Vincent): `level_keys` returns them, building the same key where
  a file lacks the column.
- `cell` is text such as "(61, 28)".
- Namibia: `fix_namimbia.py` rewrites Namibia's code to "NMB" (pandas read "NA" as missing). Both
  spellings are accepted and normalised to "NA" (also as the country part of the `unique_*` keys);
  the count is logged and `country_in_file` keeps the original.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from encoderlens.data.images import image_problem
from encoderlens.data.manifest import ManifestResult, read_csv_keep_na, require_columns, skipped_frame

REQUIRED_COLUMNS = ["id", "latitude", "longitude", "country", "region", "sub-region", "city",
                    "cell", "land_cover", "climate", "soil", "drive_side"]
TEXT_COLUMNS = ["id", "thumb_original_url", "country", "sequence", "cell", "region", "sub-region",
                "city", "unique_city", "unique_sub-region", "unique_region", "unique_country",
                "creator_username"]
NAMIBIA = "NA"
NAMIBIA_SPELLINGS = ("NA", "NMB")  # ISO alpha-2, and osv5m's fix_namimbia.py
MISSING_PART = "NaN"  # how OSV-5M's keys spell a missing coarser level
# level -> (key column, the name columns it joins, finest first; the country code comes last)
LEVEL_KEYS = {"region": ("unique_region", ["region"]),
              "sub-region": ("unique_sub-region", ["sub-region", "region"]),
              "city": ("unique_city", ["city", "sub-region", "region"])}
KEY_COLUMNS = ["unique_region", "unique_sub-region", "unique_city", "unique_country"]

log = logging.getLogger(__name__)


def _image_index(folder: Path) -> dict[str, Path]:
    """Map image stem -> path for every .jpg under `folder`, whatever the sub-folder layout."""
    index = {}
    for dirpath, _, files in os.walk(folder):
        for name in files:
            stem, ext = os.path.splitext(name)
            if ext.lower() in (".jpg", ".jpeg"):
                index.setdefault(stem, Path(dirpath) / name)
    return index


def _missing(value) -> bool:
    return value is None or (not isinstance(value, str) and pd.isna(value)) or \
        str(value).strip() in ("", MISSING_PART)


def build_key(table: pd.DataFrame, level: str) -> pd.Series:
    """OSV-5M's key of `level` built from the name columns: "" where the level's own name is
    missing, "NaN" for a missing coarser part ("Waitangi_NaN_Chatham Islands_NZ")."""
    _, parts = LEVEL_KEYS[level]
    columns = [table[part].to_numpy(dtype=object) for part in parts] + [table["country"].to_numpy(dtype=object)]
    keys = []
    for values in zip(*columns):
        if _missing(values[0]):
            keys.append("")
        else:
            keys.append("_".join(MISSING_PART if _missing(v) else str(v) for v in values))
    return pd.Series(keys, index=table.index, dtype=object)


def level_keys(table: pd.DataFrame, levels) -> pd.DataFrame:
    """One label column per level for the probes: `country` as is, the finer levels as OSV-5M's
    hierarchical keys (`unique_*` where the file has them and they are present, else built the same
    way); "" where missing (also a key that is just "NaN")."""
    out = {}
    for level in levels:
        if level == "country":
            out[level] = table["country"].astype(object).where(
                ~table["country"].map(_missing), "").to_numpy(dtype=object)
            continue
        if level not in LEVEL_KEYS:
            raise KeyError(f"no OSV-5M key for level {level!r}; known: country, {', '.join(LEVEL_KEYS)}")
        column, _ = LEVEL_KEYS[level]
        built = build_key(table, level)
        if column in table.columns:
            given = table[column].astype(object)
            keys = given.where(~given.map(_missing), built)
        else:
            keys = built
        out[level] = keys.to_numpy(dtype=object)
    return pd.DataFrame(out, index=table.index)


def normalise_namibia(table: pd.DataFrame) -> int:
    """Namibia as "NA" wherever OSV-5M spells it "NMB" (in place): the country column, and the
    country part of the keys of those rows ("_NMB" or, from a pandas read of "NA", "_NaN"). Returns
    the number of rows whose country was "NMB"."""
    country = table["country"].astype(str)
    moved = country == "NMB"
    namibia = country.isin(NAMIBIA_SPELLINGS)
    table.loc[moved, "country"] = NAMIBIA
    for column in KEY_COLUMNS:
        if column not in table.columns:
            continue
        keys = table.loc[namibia, column].astype(str)
        if column == "unique_country":
            fixed = keys.where(~keys.isin(("NMB", MISSING_PART, "")), NAMIBIA)
        else:
            fixed = keys.str.replace(r"_(NMB|NaN)$", "_" + NAMIBIA, regex=True)
        table.loc[namibia, column] = fixed
    return int(moved.sum())


def read_osv5m(root, split: str | None = None, decode_images: bool = True) -> ManifestResult:
    """Manifest and skip records of one OSV-5M split (no annotations: OSV-5M has no boxes). split None:
    the folder's `test.csv`, else its `train.csv` (a download of either split holds one of them)."""
    root = Path(root)
    if split is None:
        split = "train" if not (root / "test.csv").is_file() and (root / "train.csv").is_file() else "test"
    csv_path = root / f"{split}.csv"
    if not csv_path.is_file():
        raise FileNotFoundError(f"{csv_path}: not found (expected OSV-5M's {split}.csv)")
    header = read_csv_keep_na(csv_path, nrows=0)
    require_columns(header, REQUIRED_COLUMNS, csv_path)
    text = {c: str for c in TEXT_COLUMNS if c in header.columns}
    table = read_csv_keep_na(csv_path, dtype=text)
    for column in text:
        table[column] = table[column].fillna("")  # empty text is "", not NaN
    table.insert(table.columns.get_loc("country") + 1, "country_in_file", table["country"])
    n_nmb = normalise_namibia(table)
    if n_nmb:
        log.info("%s: %d rows spell Namibia %r (osv5m's fix_namimbia), normalised to %r", csv_path,
                 n_nmb, "NMB", NAMIBIA)
    for column in ("latitude", "longitude"):
        table[column] = pd.to_numeric(table[column], errors="coerce")
    out_of_range = {"latitude": 90.0, "longitude": 180.0}

    image_folder = root / "images" / split
    index = _image_index(image_folder)
    keep, paths, skipped, seen = [], [], [], set()
    for position, (image_id, lat, lon) in enumerate(zip(table["id"], table["latitude"], table["longitude"])):
        where = f"line {position + 2} (id={image_id})"  # line 1 is the header
        if image_id == "" or image_id in seen:
            skipped.append({"file": str(csv_path), "row": where,
                            "reason": "missing id" if image_id == "" else "duplicate id"})
            continue
        seen.add(image_id)
        if pd.isna(lat) or pd.isna(lon):
            skipped.append({"file": str(csv_path), "row": where, "reason": "missing latitude/longitude"})
            continue
        bad = [f"{name} {value:g} outside [-{limit:g}, {limit:g}]"
               for (name, limit), value in zip(out_of_range.items(), (lat, lon))
               if not np.isfinite(value) or abs(value) > limit]
        if bad:
            skipped.append({"file": str(csv_path), "row": where, "reason": "; ".join(bad)})
            continue
        path = index.get(image_id)
        problem = image_problem(path, decode=decode_images) if path else "missing image file"
        if problem:
            shown = path if path else image_folder / "*" / f"{image_id}.jpg"
            skipped.append({"file": str(shown), "row": where, "reason": problem})
            continue
        keep.append(position)
        paths.append(str(path))

    kept = table.iloc[keep].reset_index(drop=True)
    manifest = pd.concat([pd.DataFrame({"image_id": kept["id"].astype(str), "path": paths,
                                        "split": split}), kept], axis=1)
    return ManifestResult(manifest, None, skipped_frame(skipped))
