from encoderlens.logs import log_done, log_to

log_to(snakemake.log[0])

from encoderlens.report.summary import write_summary

write_summary(snakemake.input, snakemake.output.markdown, snakemake.output.html)
log_done(snakemake.output)
