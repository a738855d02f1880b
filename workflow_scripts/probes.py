from encoderlens.logs import log_done, log_to

log_to(snakemake.log[0])

import pandas as pd
import torch

from encoderlens.data.osv5m import level_keys
from encoderlens.geo.job import aligned_manifest, open_features
from encoderlens.probes.job import run_probes
from encoderlens.tables import write_table

settings = snakemake.params.probes
torch.set_num_threads(snakemake.threads)
# datasets stay on disk: small levels are read whole, large ones streamed (geo.probe_stream_rows)
ids, features = open_features(snakemake.input.embeddings, settings["probe_features"])
table = aligned_manifest(pd.read_parquet(snakemake.input.manifest), ids)
# the classes are OSV-5M's hierarchical keys ("Saint Andrew_BB", not "Saint Andrew")
# with ids: also every held-out image's answer (true and predicted class, confidence)
probes, predictions = run_probes(features, level_keys(table, settings["levels"]), levels=settings["levels"],
                                 min_per_class=settings["min_per_class"], test_size=settings["test_size"],
                                 seed=settings["seed"], C=settings["probe_C"], device=settings["device"],
                                 stream_rows=settings["probe_stream_rows"], ids=table["image_id"].to_numpy())
write_table(probes, snakemake.output.table)
write_table(predictions, snakemake.output.predictions)
log_done(snakemake.output)
