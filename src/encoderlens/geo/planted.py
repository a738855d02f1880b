"""Does the street-view pipeline recover the answers planted in the synthetic streets?

`data.synthetic_streets.PLANTED` plants a country colour cast, a hard scene attribute (fog) and a
weak continent. Each check compares a study output with its reference, per model:
- `probe_country_above_majority`: the country probe's best top-1 (over the probed features) above
  the majority-class baseline of the same split;
- `knn_above_shuffled_gallery`: mean kNN GeoScore above the shuffled-gallery reference, the exact
  expectation of the GeoScore when each query takes the location of a gallery image drawn at random
  (the mean over all query x gallery pairs);
- `failures_in_hard_attribute`: queries of the hard attribute value score a lower mean GeoScore than
  the other queries (observed: hard mean; reference: the others' mean);
- `weak_region_gap`: queries in the weak continent score a lower mean GeoScore than the others.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from ..data.places import countries
from .distance import geoscore, haversine_km

COLUMNS = ["model", "check", "observed", "reference", "n", "recovered", "note"]


def shuffled_gallery_geoscore(query_latlon: np.ndarray, gallery_latlon: np.ndarray) -> float:
    """Expected GeoScore of predicting a uniformly drawn gallery image's location for every query."""
    distance = haversine_km(query_latlon[:, None, 0], query_latlon[:, None, 1],
                            gallery_latlon[None, :, 0], gallery_latlon[None, :, 1])
    return float(geoscore(distance).mean())


def _row(model, check, observed, reference, n, note=""):
    recovered = bool(np.isfinite(observed) and np.isfinite(reference) and observed > reference)
    return {"model": model, "check": check, "observed": float(observed), "reference": float(reference),
            "n": int(n), "recovered": recovered, "note": note}


def planted_checks(manifest: pd.DataFrame, probes: Mapping[str, pd.DataFrame],
                   predictions: Mapping[str, pd.DataFrame], planted: Mapping, features: str,
                   method: str = "top1") -> pd.DataFrame:
    """One row per model and check (module docstring); `recovered` when observed > reference. For the
    two failure checks `observed` is the mean GeoScore of the other queries and `reference` that of
    the planted group, so "recovered" means the planted group scores lower."""
    table = manifest.assign(image_id=manifest["image_id"].astype(str)).set_index("image_id")
    latlon = table[["latitude", "longitude"]].to_numpy(dtype=float)
    continent = dict(zip(countries()["cc"], countries()["continent"]))
    column, hard_value = planted["hard_attribute"]
    rows = []
    for model in sorted(set(probes) | set(predictions)):
        if model in probes:
            country = probes[model][probes[model]["level"] == "country"]
            usable = country[country["probeable"].astype(bool)]
            if usable.empty:
                rows.append(_row(model, "probe_country_above_majority", np.nan, np.nan, 0, "not probeable"))
            else:
                best = usable.loc[usable["top1"].idxmax()]
                rows.append(_row(model, "probe_country_above_majority", best["top1"], best["majority_top1"],
                                 best["n_test"], f"features {best['features']}"))
        if model not in predictions:
            continue
        chosen = predictions[model]
        chosen = chosen[(chosen["features"] == features) & (chosen["method"] == method)]
        queries = chosen["image_id"].astype(str)
        scores = chosen["geoscore"].to_numpy(dtype=float)
        gallery = ~table.index.isin(queries)
        reference = shuffled_gallery_geoscore(table.loc[queries, ["latitude", "longitude"]].to_numpy(float),
                                              latlon[gallery])
        rows.append(_row(model, "knn_above_shuffled_gallery", scores.mean(), reference, len(scores)))
        hard = (table.loc[queries, column].astype(str) == str(hard_value)).to_numpy()
        rows.append(_row(model, "failures_in_hard_attribute", scores[~hard].mean() if (~hard).any() else np.nan,
                         scores[hard].mean() if hard.any() else np.nan, int(hard.sum()),
                         f"observed: mean GeoScore off {column}={hard_value}; reference: on it"))
        codes = table.loc[queries, "country"].astype(str).replace({"NMB": "NA"})
        weak = (codes.map(continent) == planted["weak_continent"]).to_numpy()
        rows.append(_row(model, "weak_region_gap", scores[~weak].mean() if (~weak).any() else np.nan,
                         scores[weak].mean() if weak.any() else np.nan, int(weak.sum()),
                         f"observed: mean GeoScore outside continent {planted['weak_continent']}; "
                         f"reference: inside it"))
    return pd.DataFrame(rows, columns=COLUMNS)
