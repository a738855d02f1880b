from encoderlens.logs import log_to

log_to(snakemake.log[0])

import logging

import pandas as pd

from encoderlens.geo.depth import depth_study
from encoderlens.geo.study import read_features
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
logging.getLogger("geo_depth").info(f"geo depth of {len(entities)} models/variants: {len(tables['failures'])} worst queries listed, "
      f"{len(tables['regional'])} regional rows, {len(tables['model_comparisons'])} paired tests, "
      f"{len(tables['cka'])} CKA values")
