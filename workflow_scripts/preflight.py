from encoderlens.logs import log_done, log_to

log_to(snakemake.log[0])

from encoderlens.preflight import preflight

preflight(snakemake.params.plan, snakemake.output[0])
log_done(snakemake.output)
