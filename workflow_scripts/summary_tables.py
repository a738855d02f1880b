from encoderlens.logs import log_done, log_to

log_to(snakemake.log[0])

import sys

from encoderlens.report.summary import STUDIES, study_tables, write_study_tables

study = snakemake.params.study
inputs = {key: value for key, value in snakemake.input.items()}
tables = study_tables(study, inputs, snakemake.params.settings)
outputs = {name: {"csv": snakemake.output[f"{name}_csv"], "html": snakemake.output[f"{name}_html"]}
           for name in STUDIES[study].tables if f"{name}_csv" in snakemake.output.keys()}
write_study_tables(study, snakemake.params.settings["dataset"], tables, outputs, snakemake.output.index)
print(f"{study} tables of {snakemake.params.settings['dataset']}: "
      + ", ".join(f"{name} ({len(tables[name].frame)} rows)" for name in outputs), file=sys.stderr)
log_done(snakemake.output)
