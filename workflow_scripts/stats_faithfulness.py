from encoderlens.logs import log_done, log_to

log_to(snakemake.log[0])

from encoderlens.faithfulness.stats import faithfulness_statistics
from encoderlens.tables import write_table

tables = faithfulness_statistics(snakemake.input.faithfulness, snakemake.input.alignment, snakemake.params.stats)
write_table(tables["summary"], snakemake.output.summary)
write_table(tables["comparisons"], snakemake.output.comparisons)
write_table(tables["plausibility"], snakemake.output.plausibility)
log_done(snakemake.output)
