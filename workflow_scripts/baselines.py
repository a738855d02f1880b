from encoderlens.logs import log_done, log_to

log_to(snakemake.log[0])

import pandas as pd

from encoderlens.alignment.job import score_baselines
from encoderlens.tables import write_table

settings = snakemake.params.baselines
scores, features = score_baselines(
    pd.read_parquet(snakemake.input.manifest, columns=["image_id", "path"]),
    pd.read_parquet(snakemake.input.annotations),
    baselines=settings["baselines"],
    size=settings["size"],
    thresholds=settings["thresholds"],
    tolerance=settings["pointing_tolerance"],
    draws=settings["random_draws"],
    seed=settings["seed"],
    threads=snakemake.threads,
)
write_table(scores, snakemake.output.scores)
write_table(features, snakemake.output.features)
log_done(snakemake.output)
