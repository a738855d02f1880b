from encoderlens.logs import log_done, log_to

log_to(snakemake.log[0])

from encoderlens.data.formats import write_synthetic_dataset

settings = dict(snakemake.params.synthetic)
write_synthetic_dataset(settings.pop("format"), snakemake.output[0], **settings)
log_done(snakemake.output)
