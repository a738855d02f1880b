from encoderlens.logs import log_done, log_to

log_to(snakemake.log[0])

from encoderlens.stats import head_statistics
from encoderlens.tables import write_table

tables = head_statistics(snakemake.input.tables, snakemake.params.heads)
write_table(tables["heads"], snakemake.output.heads)
write_table(tables["specialisation"], snakemake.output.specialisation)
write_table(tables["correlation"], snakemake.output.correlation)
write_table(tables["top"], snakemake.output.top)
log_done(snakemake.output)
