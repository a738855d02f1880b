from encoderlens.logs import log_done, log_to

log_to(snakemake.log[0])

from encoderlens.stats import alignment_statistics
from encoderlens.tables import write_table

tables = alignment_statistics(snakemake.input.tables, snakemake.params.stats)
write_table(tables["summary"], snakemake.output.summary)
write_table(tables["models"], snakemake.output.models)
write_table(tables["variants"], snakemake.output.variants)
log_done(snakemake.output)
