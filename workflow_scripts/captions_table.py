from encoderlens.logs import log_done, log_to

log_to(snakemake.log[0])

from encoderlens.captions import job

job.caption_table_job(snakemake.params.folder, snakemake.output[0], snakemake.params.default_language)
log_done(snakemake.output)
