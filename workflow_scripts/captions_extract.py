from encoderlens.logs import log_done, log_to

log_to(snakemake.log[0])

from encoderlens.captions import job

job.extract_job(snakemake.input.translated, snakemake.input.places, snakemake.output.mentions,
                 snakemake.output.status, snakemake.params.extraction, snakemake.params.llm,
                 snakemake.params.cache)
log_done(snakemake.output)
