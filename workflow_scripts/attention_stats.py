from encoderlens.logs import log_done, log_to

log_to(snakemake.log[0])

import pandas as pd

from encoderlens.attention.statistics import aggregate, statistics_from_h5
from encoderlens.tables import write_table

stats = statistics_from_h5(snakemake.input.attention, layers=snakemake.params.stats["layers"])
labels = pd.read_parquet(snakemake.input.manifest, columns=["image_id", "country"])
write_table(stats, snakemake.output.per_image)
write_table(aggregate(stats, by=["country", "layer"], labels=labels), snakemake.output.per_country)
log_done(snakemake.output)
