from encoderlens.logs import log_done, log_to

log_to(snakemake.log[0])

import logging

import pandas as pd

from encoderlens.geo.depth import depth_study
from encoderlens.geo.job import read_features
from encoderlens.tables import write_table

settings = snakemake.params.depth
attention = iter(snakemake.input.attention)
entities = {}
for entity, predictions, embeddings in zip(settings["entities"], snakemake.input.predictions,
                                           snakemake.input.embeddings):
    entities[entity["name"]] = {
        "predictions": pd.read_parquet(predictions),
        "attention": pd.read_parquet(next(attention)) if entity["attention"] else None,
        "embeddings": read_features(embeddings, settings["cka_features"]),
    }
tables = depth_study(pd.read_parquet(snakemake.input.manifest), entities, settings)
for name, table in tables.items():
    write_table(table, snakemake.output[name])
logging.getLogger("geo_depth").info(
    "geo depth of %d models/variants: %d worst queries listed, %d regional rows, %d paired tests, %d CKA values",
    len(entities), len(tables["failures"]), len(tables["regional"]), len(tables["model_comparisons"]),
    len(tables["cka"]))
log_done(snakemake.output)
