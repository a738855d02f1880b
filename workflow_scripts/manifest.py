from encoderlens.logs import log_done, log_to

log_to(snakemake.log[0])

import logging

from encoderlens.data.formats import read_dataset
from encoderlens.data.images import pixel_summary
from encoderlens.data.manifest import write_manifest_outputs

result = read_dataset(snakemake.params.format, snakemake.params.folder, **snakemake.params.options)
logging.getLogger("encoderlens.manifest").info("%s: %s", snakemake.params.folder, pixel_summary(result.manifest))
write_manifest_outputs(result, snakemake.output.manifest, snakemake.output.annotations,
                       snakemake.output.skipped)
log_done(snakemake.output)
