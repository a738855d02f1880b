from encoderlens.logs import log_done, log_to

log_to(snakemake.log[0])

from encoderlens.models.build import build_tiny_atomically

settings = dict(snakemake.params.tiny)
build_tiny_atomically(settings.pop("family"), snakemake.output[0], **settings)
log_done(snakemake.output)
