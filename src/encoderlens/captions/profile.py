"""The dataset's geography: distributions per entity, correlation with a covariate, evaluation.

Distributions: for each entity, the captions mentioning it, counted per predicted country and per
continent, "Unknown" kept as a bucket, so the counts of one (entity, level) sum to the number of
captions mentioning the entity. Entity "all" counts each caption mentioning at least one entity
once. `share` = count / that number.

Covariates: a user table with a country column (ISO alpha-2) and numeric columns (GDP, population,
...); per entity and covariate, Spearman's rho between the covariate and the country counts over
the countries present in the covariate table (countries with no caption count 0; Unknown is left
out).

Evaluation: on captions with a ground-truth country, accuracy overall and per `subset`, an "Unknown"
prediction counting as wrong, with a Wilson 95% interval; and the confusion counts among the
`top` most frequent true countries (the rest pooled as "other").
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .geography import UNKNOWN, continents

DISTRIBUTION_COLUMNS = ["entity", "level", "place", "count", "share"]
CORRELATION_COLUMNS = ["entity", "covariate", "n_countries", "rho", "p_value"]
EVALUATION_COLUMNS = ["scope", "subset", "n", "correct", "accuracy", "ci_low", "ci_high", "n_unknown"]
CONFUSION_COLUMNS = ["country_true", "country_pred", "count"]


def _entity_groups(predictions: pd.DataFrame) -> dict[str, pd.DataFrame]:
    named = predictions[predictions["entity"] != ""]
    groups = {"all": named.drop_duplicates("image_id")}
    for entity, group in named.groupby("entity", sort=True):
        groups[entity] = group
    return groups


def distributions(predictions: pd.DataFrame, continent_scheme: str = "Continent_7") -> pd.DataFrame:
    rows = []
    for entity, group in _entity_groups(predictions).items():
        total = len(group)
        country = group["country_pred"].astype(str)
        continent = country.map(continents(country, continent_scheme))
        for level, values in (("country", country), ("continent", continent)):
            counts = values.value_counts()
            ordered = sorted(counts.items(), key=lambda kv: (kv[0] == UNKNOWN, -kv[1], kv[0]))
            rows += [(entity, level, place, int(count), count / total) for place, count in ordered]
    table = pd.DataFrame(rows, columns=DISTRIBUTION_COLUMNS)
    return table.astype({"count": "int64", "share": "float64"})


def covariate_correlations(table: pd.DataFrame, covariates: pd.DataFrame,
                           country_column: str = "country") -> pd.DataFrame:
    from scipy.stats import spearmanr

    if country_column not in covariates.columns:
        raise ValueError(f"covariate table has no column {country_column!r}")
    values = covariates.set_index(covariates[country_column].astype(str).str.upper())
    numeric = [c for c in values.columns if c != country_column and pd.api.types.is_numeric_dtype(values[c])]
    rows = []
    counts = table[table["level"] == "country"]
    for entity, group in counts.groupby("entity", sort=True):
        per_country = group.set_index("place")["count"]
        for covariate in numeric:
            present = values[covariate].dropna()
            x = present.to_numpy(dtype=float)
            y = per_country.reindex(present.index).fillna(0).to_numpy(dtype=float)
            if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
                rho, p = np.nan, np.nan
            else:
                rho, p = spearmanr(x, y)
            rows.append((entity, covariate, len(x), float(rho), float(p)))
    return pd.DataFrame(rows, columns=CORRELATION_COLUMNS)


def wilson_interval(correct: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    if n == 0:
        return float("nan"), float("nan")
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def evaluation(predictions: pd.DataFrame, top: int = 10) -> tuple[pd.DataFrame, pd.DataFrame]:
    captions = predictions.drop_duplicates("image_id")
    labelled = captions[captions["country_true"].astype(str) != ""]
    right = labelled["country_pred"] == labelled["country_true"]
    rows = []

    def add(scope, subset, mask):
        n, correct = int(mask.sum()), int((right & mask).sum())
        low, high = wilson_interval(correct, n)
        unknown = int(((labelled["country_pred"] == UNKNOWN) & mask).sum())
        rows.append((scope, subset, n, correct, correct / n if n else float("nan"), low, high, unknown))

    add("overall", "", pd.Series(True, index=labelled.index))
    for subset in sorted(set(labelled["subset"]) - {""}):
        add("subset", subset, labelled["subset"] == subset)
    table = pd.DataFrame(rows, columns=EVALUATION_COLUMNS)
    frequent = labelled["country_true"].value_counts()
    frequent = sorted(frequent.index, key=lambda c: (-frequent[c], c))[:top]
    pooled_true = labelled["country_true"].where(labelled["country_true"].isin(frequent), "other")
    keep = frequent + [UNKNOWN]
    pooled_pred = labelled["country_pred"].where(labelled["country_pred"].isin(keep), "other")
    confusion = (pd.DataFrame({"country_true": pooled_true, "country_pred": pooled_pred})
                 .value_counts().rename("count").reset_index())
    confusion = confusion.sort_values(["country_true", "count", "country_pred"],
                                      ascending=[True, False, True]).reset_index(drop=True)
    return table, confusion[CONFUSION_COLUMNS].astype({"count": "int64"})


def restrict_to_shown(predictions: pd.DataFrame, presence: pd.DataFrame) -> pd.DataFrame:
    """Prediction rows of entity-mentioning captions whose image the SVM flags as showing the entity."""
    shown = presence[presence["mentioned"] & presence["shows_entity"]]
    keys = set(zip(shown["image_id"], shown["entity"]))
    mask = [(i, e) in keys for i, e in zip(predictions["image_id"], predictions["entity"])]
    return predictions[mask].reset_index(drop=True)
