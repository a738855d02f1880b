from encoderlens.logs import log_done, log_to

log_to(snakemake.log[0])

from encoderlens.captions import job

job.evaluation_job(snakemake.input[0], snakemake.output.evaluation, snakemake.output.confusion,
                    snakemake.params.top)
log_done(snakemake.output)
