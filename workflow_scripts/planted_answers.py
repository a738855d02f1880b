from encoderlens.logs import log_done, log_to

log_to(snakemake.log[0])

import logging

import pandas as pd

from encoderlens.data.synthetic_streets import PLANTED
from encoderlens.geo.planted import planted_checks
from encoderlens.tables import write_table

settings = snakemake.params.planted
models = settings["models"]
checks = planted_checks(pd.read_parquet(snakemake.input.manifest),
                        {m: pd.read_parquet(p) for m, p in zip(models, snakemake.input.probes)},
                        {m: pd.read_parquet(p) for m, p in zip(models, snakemake.input.predictions)},
                        PLANTED, settings["features"], settings["method"])
write_table(checks, snakemake.output[0])
logging.getLogger("planted_answers").info("planted answers recovered: %d of %d checks (%s)",
                                          int(checks["recovered"].sum()), len(checks),
                                          ", ".join(checks.loc[~checks["recovered"], "check"].unique()) or "all")
log_done(snakemake.output)
