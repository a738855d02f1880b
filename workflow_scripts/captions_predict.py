from encoderlens.logs import log_done, log_to

log_to(snakemake.log[0])

from encoderlens.captions import job

job.predict_job(snakemake.input.captions, snakemake.input.translated, snakemake.input.mentions,
                 snakemake.input.candidates, snakemake.output.predictions, snakemake.output.status,
                 snakemake.params.prediction, snakemake.params.entities,
                 snakemake.params.continent_scheme, snakemake.params.llm, snakemake.params.cache)
log_done(snakemake.output)
