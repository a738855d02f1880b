"""Countries: names for the gazetteer, continents for the distributions (country_converter).

country_converter reads its own table with pandas' default missing-value markers, which turn
Namibia's ISO code "NA" into NaN; the table is read here with keep_default_na=False and handed to it.
"""

from __future__ import annotations

import functools

import pandas as pd

UNKNOWN = "Unknown"
CONTINENT_SCHEMES = ("continent", "Continent_7")


@functools.lru_cache(maxsize=1)
def _converter():
    import country_converter as coco
    from country_converter import country_converter as module

    table = pd.read_csv(module.COUNTRY_DATA_FILE, sep="\t", encoding="utf-8", dtype=str,
                        keep_default_na=False, na_values=[""])
    return coco.CountryConverter(country_data=table)


def continents(codes, scheme: str = "Continent_7") -> dict[str, str]:
    """ISO alpha-2 code -> continent name ("Unknown" for "Unknown", "" or a code coco lacks)."""
    if scheme not in CONTINENT_SCHEMES:
        raise ValueError(f"unknown continent scheme {scheme!r}: use one of {CONTINENT_SCHEMES}")
    codes = sorted({str(c) for c in codes})
    known = [c for c in codes if c and c != UNKNOWN]
    result = {c: UNKNOWN for c in codes}
    if known:
        import logging

        # coco logs every code it does not know at WARNING; those become Unknown here by design
        logging.getLogger("country_converter").setLevel(logging.ERROR)
        names = _converter().convert(known, src="ISO2", to=scheme, not_found=UNKNOWN)
        names = [names] if isinstance(names, str) else names
        result.update(zip(known, names))
    return result


def country_names() -> pd.DataFrame:
    """One row per (country, name): cc, name, population. Names from GeoNames and country_converter
    (short and official), so "Ivory Coast", "Côte d'Ivoire" and "Republic of Côte d'Ivoire" all count."""
    from encoderlens.data.places import countries

    geonames = countries()
    population = dict(zip(geonames["cc"], geonames["population"]))
    coco_table = _converter().data
    rows = [(cc, name) for cc, name in zip(geonames["cc"], geonames["country"])]
    for column in ("name_short", "name_official"):
        rows += [(cc, name) for cc, name in zip(coco_table["ISO2"], coco_table[column])
                 if isinstance(cc, str) and isinstance(name, str) and cc in population]
    table = pd.DataFrame(rows, columns=["cc", "name"]).drop_duplicates()
    table["population"] = table["cc"].map(population).fillna(0).astype("int64")
    return table.reset_index(drop=True)
