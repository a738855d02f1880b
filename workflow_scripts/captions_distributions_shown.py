from encoderlens.logs import log_done, log_to

log_to(snakemake.log[0])

from encoderlens.captions import job

job.distributions_job(snakemake.input.predictions, snakemake.output[0], None,
                       snakemake.params.continent_scheme, presence=snakemake.input.presence)
log_done(snakemake.output)
