from encoderlens.logs import log_done, log_to

log_to(snakemake.log[0])

from encoderlens.captions import job

job.distributions_job(snakemake.input.predictions, snakemake.output.distributions,
                       snakemake.output.correlations, snakemake.params.continent_scheme,
                       snakemake.params.covariates)
log_done(snakemake.output)
