from encoderlens.logs import log_done, log_to

log_to(snakemake.log[0])

from encoderlens.models.hub import snapshot_model

hub = snakemake.params.hub
snapshot_model(hub["family"], hub["hub_id"], hub["revision"], snakemake.output[0])
log_done(snakemake.output)
