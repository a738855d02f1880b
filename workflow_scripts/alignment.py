from encoderlens.logs import log_done, log_to

log_to(snakemake.log[0])

import pandas as pd

from encoderlens.alignment.job import score_attention_file
from encoderlens.tables import write_table

settings = snakemake.params.alignment
scores, features = score_attention_file(
    snakemake.input.attention,
    pd.read_parquet(snakemake.input.annotations),
    model=snakemake.wildcards.model,
    variant=snakemake.wildcards.variant,
    thresholds=settings["thresholds"],
    tolerance=settings["pointing_tolerance"],
    analysis_size=settings["analysis_size"],
    methods=settings["methods"],
    threads=snakemake.threads,
)
write_table(scores, snakemake.output.scores)
write_table(features, snakemake.output.features)
log_done(snakemake.output)
