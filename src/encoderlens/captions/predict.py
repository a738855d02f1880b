"""The country behind a caption, from its mentions' GeoNames candidates.

Per mention: the candidates whose similarity is at least `min_similarity` and within `margin` of the
mention's best are its readings; among them each place weighs population ** `population_exponent`
(the prior that a bare "Paris" is the large one), and the weights, normalised, give the mention's
country distribution. Per caption: the distributions of its mentions, each weighted by the
mention's best similarity, are summed, and the country with the largest sum is the prediction,
with `confidence` its share of the sum. A caption that names a city and its country ("Douglas,
Isle of Man") thus resolves the city's ambiguity. A caption without a usable mention is "Unknown":
an outcome, counted in the distributions, never an error.

Predictions: one row per caption and entity it mentions (entity "" for a caption mentioning none),
columns PREDICTION_COLUMNS; `confidence` is NaN where the backend gives none (an llm reply without
one, a caption the llm left unanswered); `text` is the English text the entities and places were
read from and `translated` says whether it came from the translation model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .geography import UNKNOWN

PREDICTION_COLUMNS = ["image_id", "entity", "country_pred", "continent_pred", "confidence",
                      "n_mentions", "mentions", "method", "country_true", "subset", "language", "text",
                      "translated"]


def country_scores(candidates: pd.DataFrame, min_similarity: float = 0.8, margin: float = 0.02,
                   population_exponent: float = 0.5) -> pd.DataFrame:
    """Per (image_id, cc): the summed, similarity-weighted country share over the caption's mentions."""
    if candidates.empty:
        return pd.DataFrame(columns=["image_id", "cc", "score"])
    table = candidates[["image_id", "mention", "cc", "population", "similarity"]].copy()
    best = table.groupby(["image_id", "mention"])["similarity"].transform("max")
    table = table[(table["similarity"] >= min_similarity) & (table["similarity"] >= best - margin)]
    if table.empty:
        return pd.DataFrame(columns=["image_id", "cc", "score"])
    best = best.loc[table.index]
    weight = np.power(np.maximum(table["population"].to_numpy(dtype=np.float64), 1.0),
                      population_exponent)
    table = table.assign(weight=weight, best=best)
    table["share"] = table["weight"] / table.groupby(["image_id", "mention"])["weight"].transform("sum")
    table["score"] = table["share"] * table["best"]
    return table.groupby(["image_id", "cc"], as_index=False)["score"].sum()


def predict_from_candidates(candidates: pd.DataFrame, ids, **settings) -> pd.DataFrame:
    """(image_id, country_pred, confidence) for every id in `ids`; "Unknown" without a reading."""
    scores = country_scores(candidates, **settings)
    frame = pd.DataFrame({"image_id": pd.Series(list(ids), dtype=str)})
    if len(scores):
        scores = scores.sort_values(["image_id", "score", "cc"], ascending=[True, False, True],
                                    kind="stable")
        total = scores.groupby("image_id")["score"].sum()
        top = scores.drop_duplicates("image_id").set_index("image_id")
        frame["country_pred"] = frame["image_id"].map(top["cc"]).fillna(UNKNOWN)
        frame["confidence"] = frame["image_id"].map(top["score"] / total).fillna(0.0)
    else:
        frame["country_pred"], frame["confidence"] = UNKNOWN, 0.0
    return frame


def assemble_predictions(captions: pd.DataFrame, translated: pd.DataFrame, mentions: pd.DataFrame,
                         predicted: pd.DataFrame, entities, method: str,
                         continent_scheme: str = "Continent_7") -> pd.DataFrame:
    """The predictions table: one row per caption and mentioned entity (see the module notes)."""
    from .geography import continents
    from .table import entity_mentions

    table = captions[["image_id", "country_true", "subset", "language"]].merge(
        translated[["image_id", "text", "translated"]], on="image_id", how="left", validate="one_to_one")
    table = table.merge(predicted, on="image_id", how="left", validate="one_to_one")
    table["country_pred"] = table["country_pred"].fillna(UNKNOWN)
    # NaN stays NaN: the llm backend's confidence is unknown unless its reply gives one
    table["confidence"] = table["confidence"].astype(float)
    listed = mentions.groupby("image_id")["mention"].agg(lambda m: "|".join(dict.fromkeys(m)))
    table["mentions"] = [listed.get(image_id, "") for image_id in table["image_id"]]  # "" without any
    table["n_mentions"] = table["image_id"].map(mentions.groupby("image_id").size()).fillna(0).astype("int64")
    table["method"] = method
    table["continent_pred"] = table["country_pred"].map(continents(table["country_pred"], continent_scheme))
    flags = entity_mentions(table["text"].fillna(""), entities)
    parts = [table[flags[entity].to_numpy()].assign(entity=entity) for entity in entities]
    parts.append(table[~flags.any(axis=1).to_numpy()].assign(entity=""))
    result = pd.concat(parts, ignore_index=True)
    order = {image_id: i for i, image_id in enumerate(captions["image_id"])}
    result = result.sort_values("image_id", key=lambda s: s.map(order), kind="stable")
    return result[PREDICTION_COLUMNS].reset_index(drop=True)
