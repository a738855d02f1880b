from encoderlens.logs import log_done, log_to

log_to(snakemake.log[0])

from encoderlens.report.dashboard import build_dashboard

build_dashboard(snakemake.params.layout, snakemake.output[0], snakemake.params.settings)
log_done(snakemake.output)
