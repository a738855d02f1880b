from encoderlens.logs import log_done, log_to

log_to(snakemake.log[0])

import sys

import pandas as pd

from encoderlens.finetune.delta import delta_iou, retention_summary
from encoderlens.tables import write_table

frozen = pd.read_parquet(snakemake.input.frozen)
parts = []
for path in snakemake.input.tuned:
    part, dropped = delta_iou(frozen, pd.read_parquet(path), snakemake.input.frozen, path)
    print(f"{path}: {len(part)} paired rows, {dropped} dropped (unpaired or unscorable)", file=sys.stderr)
    parts.append(part)
delta = pd.concat(parts, ignore_index=True)
write_table(delta, snakemake.output.delta)
write_table(retention_summary(delta), snakemake.output.retention)
write_table(pd.DataFrame(snakemake.params.skipped, columns=["file", "row", "reason"]), snakemake.output.skipped)
log_done(snakemake.output)
