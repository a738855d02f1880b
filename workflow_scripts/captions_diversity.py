from encoderlens.logs import log_done, log_to

log_to(snakemake.log[0])

from encoderlens.captions import job

job.diversity_job(snakemake.input.predictions, snakemake.input.captions, snakemake.input.images,
                   snakemake.output[0], snakemake.params.feature, snakemake.params.min_items)
log_done(snakemake.output)
