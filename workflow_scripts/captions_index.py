from encoderlens.logs import log_done, log_to

log_to(snakemake.log[0])

from encoderlens.captions import job

job.name_index_job(snakemake.input[0], snakemake.output[0], snakemake.params.index)
log_done(snakemake.output)
