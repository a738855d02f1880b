from encoderlens.logs import log_done, log_to

log_to(snakemake.log[0])

import pandas as pd

from encoderlens.faithfulness.job import faithfulness_file
from encoderlens.tables import write_table

settings = snakemake.params.faithfulness
scores, curves = faithfulness_file(
    snakemake.input.attention,
    pd.read_parquet(snakemake.input.manifest, columns=["image_id", "path"]),
    pd.read_parquet(snakemake.input.annotations, columns=["image_id"]),
    model_folder=snakemake.input.model,
    family=settings["family"],
    model=snakemake.wildcards.model,
    variant=snakemake.wildcards.variant,
    settings=settings,
    image_size=settings["image_size"],
    tuned_folder=snakemake.params.tuned_folder,
    device=settings["device"],
    threads=snakemake.threads,
)
write_table(scores, snakemake.output.scores)
write_table(curves, snakemake.output.curves)
log_done(snakemake.output)
