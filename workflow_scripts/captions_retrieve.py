from encoderlens.logs import log_done, log_to

log_to(snakemake.log[0])

from encoderlens.captions import job

job.retrieve_job(snakemake.input.mentions, snakemake.input.index, snakemake.output[0],
                  snakemake.params.k, snakemake.params.encoder, snakemake.params.orthographic)
log_done(snakemake.output)
