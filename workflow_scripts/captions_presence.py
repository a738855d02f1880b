from encoderlens.logs import log_done, log_to

log_to(snakemake.log[0])

from encoderlens.captions import job

job.presence_job(snakemake.input.predictions, snakemake.input.embeddings, snakemake.output.presence,
                  snakemake.output.svm, snakemake.wildcards.model, snakemake.params.entities,
                  snakemake.params.presence)
log_done(snakemake.output)
