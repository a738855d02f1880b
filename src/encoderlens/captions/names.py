"""The place names that extraction matches and retrieval searches: one row per (name, place).

Built from the GeoNames places table (`resources/geonames/places.parquet`) restricted to places with
population >= `min_population`, plus every country under its GeoNames and country_converter names.
A place contributes its name, its ASCII name and, as configured, its alternate names:

- `alternate_names: latin`: the alternates written in Latin script (captions are matched after
  translation into English), leaving out GeoNames' codes (all-capital words of up to 4 letters such
  as airport codes) and its lower-case transliterations;
- `all`: every alternate name; `none`: only name and ASCII name.

Columns: name, place (row of the places table, -1 for a country), kind (city|country), place_name
(the place's main name), cc, population, geonameid (-1 where unknown).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .geography import country_names

NAME_COLUMNS = ["name", "place", "kind", "place_name", "cc", "population", "geonameid"]


def is_latin(text: str) -> bool:
    """Every letter in Latin script (Basic Latin to Latin Extended-B, Latin Extended Additional)."""
    return all(not ch.isalpha() or ord(ch) < 0x250 or 0x1E00 <= ord(ch) < 0x1F00 for ch in text)


def _keep_alternate(name: str, mode: str) -> bool:
    if mode == "all":
        return True
    letters = [ch for ch in name if ch.isalpha()]
    if not letters or not is_latin(name):
        return False
    if name.isupper() and len(letters) <= 4:  # IATA/ICAO codes and abbreviations
        return False
    return any(ch.isupper() for ch in letters)  # drops GeoNames' lower-case transliterations


def place_names(places: pd.DataFrame, min_population: int = 10_000, alternate_names: str = "latin",
                countries: list[str] | None = None) -> pd.DataFrame:
    """The name table (NAME_COLUMNS); `countries` restricts the cities (not the country names) to
    those ISO codes."""
    if alternate_names not in ("latin", "all", "none"):
        raise ValueError(f"alternate_names {alternate_names!r}: use latin, all or none")
    keep = places["population"].fillna(0).astype("int64") >= min_population
    if countries is not None:
        keep &= places["cc"].isin(countries)
    selected = places[keep]
    rows = []
    geonameid = selected["geonameid"].fillna(-1).astype("int64") if "geonameid" in selected else \
        pd.Series(-1, index=selected.index)
    alternates = selected["alternatenames"] if "alternatenames" in selected else \
        pd.Series("", index=selected.index)
    for row, name, ascii_name, others, cc, population, gid in zip(
            selected.index, selected["name"], selected.get("asciiname", selected["name"]), alternates,
            selected["cc"], selected["population"], geonameid):
        forms = {name, ascii_name}
        if alternate_names != "none" and others:
            forms.update(a for a in str(others).split(",") if _keep_alternate(a, alternate_names))
        seen = set()
        for form in sorted(f.strip() for f in forms if f and f.strip()):
            if form.casefold() not in seen:
                seen.add(form.casefold())
                rows.append((form, int(row), "city", name, cc, int(population), int(gid)))
    for cc, name, population in country_names().itertuples(index=False):
        rows.append((name, -1, "country", name, cc, int(population), -1))
    table = pd.DataFrame(rows, columns=NAME_COLUMNS)
    return table.astype({"place": np.int64, "population": np.int64, "geonameid": np.int64})
