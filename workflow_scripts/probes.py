from encoderlens.logs import log_to

log_to(snakemake.log[0])

import pandas as pd
import torch

from encoderlens.geo.job import aligned_manifest, read_features
from encoderlens.probes.job import run_probes
from encoderlens.tables import write_table

settings = snakemake.params.probes
torch.set_num_threads(snakemake.threads)
ids, features = read_features(snakemake.input.embeddings, settings["probe_features"])
table = aligned_manifest(pd.read_parquet(snakemake.input.manifest), ids)
probes = run_probes(features, table[settings["levels"]], levels=settings["levels"],
                    min_per_class=settings["min_per_class"], test_size=settings["test_size"],
                    seed=settings["seed"], C=settings["probe_C"], device=settings["device"])
write_table(probes, snakemake.output[0])
