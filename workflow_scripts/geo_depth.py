from encoderlens.logs import log_done, log_to

log_to(snakemake.log[0])

import logging

import pandas as pd

from encoderlens.data.osv5m import level_keys
from encoderlens.geo.depth import depth_study
from encoderlens.geo.job import read_features
from encoderlens.tables import write_table

settings = snakemake.params.depth
manifest = pd.read_parquet(snakemake.input.manifest)
# each manifest row's probe class per level (OSV-5M's hierarchical keys, as the probes use them)
labels = level_keys(manifest, settings["levels"])
attention = iter(snakemake.input.attention)
probes = iter(snakemake.input.probes)
entities = {}
for entity, predictions, embeddings in zip(settings["entities"], snakemake.input.predictions,
                                           snakemake.input.embeddings):
    ids, retrieval = read_features(embeddings, [settings["features"]])
    entities[entity["name"]] = {
        "predictions": pd.read_parquet(predictions),
        "attention": pd.read_parquet(next(attention)) if entity["attention"] else None,
        "embeddings": read_features(embeddings, settings["cka_features"]),
        "probe_predictions": pd.read_parquet(next(probes)) if entity["probes"] else None,
        "labels": labels,
        "retrieval": (ids, retrieval[settings["features"]]) if settings["features"] in retrieval else None,
    }
tables = depth_study(manifest, entities, settings)
for name, table in tables.items():
    write_table(table, snakemake.output[name])
logging.getLogger("geo_depth").info(
    "geo depth of %d models/variants: %d worst queries listed, %d regional rows, %d paired tests, %d CKA values",
    len(entities), len(tables["failures"]), len(tables["regional"]), len(tables["model_comparisons"]),
    len(tables["cka"]))
log_done(snakemake.output)
