from encoderlens.logs import log_done, log_to

log_to(snakemake.log[0])

from encoderlens.captions import job

job.translate_job(snakemake.input[0], snakemake.output[0], snakemake.params.translation)
log_done(snakemake.output)
