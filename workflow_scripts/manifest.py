from encoderlens.logs import log_done, log_to

log_to(snakemake.log[0])

from encoderlens.data.formats import read_dataset
from encoderlens.data.manifest import write_manifest_outputs

result = read_dataset(snakemake.params.format, snakemake.input[0])
write_manifest_outputs(result, snakemake.output.manifest, snakemake.output.annotations,
                       snakemake.output.skipped)
log_done(snakemake.output)
