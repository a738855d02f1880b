from encoderlens.logs import log_done, log_to

log_to(snakemake.log[0])

import pandas as pd

from encoderlens.finetune.style_probe import style_probe
from encoderlens.tables import write_table

settings = snakemake.params.probe
table = style_probe(snakemake.input.embeddings, pd.read_parquet(snakemake.input.manifest), settings["classes"],
                    model=snakemake.wildcards.model, features=settings["features"], folds=settings["folds"],
                    C=settings["C"], seed=settings["seed"], source=snakemake.input.manifest,
                    min_pool_images=settings["min_pool_images"])
write_table(table, snakemake.output[0])
log_done(snakemake.output)
