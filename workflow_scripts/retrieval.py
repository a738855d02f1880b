from encoderlens.logs import log_done, log_to

log_to(snakemake.log[0])

import pandas as pd

from encoderlens.geo.knn import KnnIndex
from encoderlens.geo.job import (aligned_manifest, gallery_study, geometry_study, knn_study,
                                   read_features)
from encoderlens.tables import write_table

settings = snakemake.params.retrieval
ids, features = read_features(snakemake.input.embeddings, settings["retrieval_features"])
table = aligned_manifest(pd.read_parquet(snakemake.input.manifest), ids)
places = pd.read_parquet(snakemake.input.places)

knn, predictions = knn_study(features, table, places, settings["query_fraction"], settings["knn_k"],
                             settings["seed"], index=KnnIndex.from_settings(settings))
write_table(knn, snakemake.output.knn)
write_table(predictions, snakemake.output.predictions)

summary, bins = geometry_study(features, table, settings["geometry_pairs"], settings["seed"],
                               settings["distance_bins_km"], max_rows=settings["geometry_rows"])
write_table(summary, snakemake.output.geometry)
write_table(bins, snakemake.output.geometry_bins)

first = next(iter(features.values()))
gallery, groups = gallery_study(first, table, settings["gallery_size"], settings["gallery_seeds"],
                                settings["query_fraction"], settings["gallery_groups"],
                                max_rows=settings["geometry_rows"])
write_table(gallery, snakemake.output.gallery)
write_table(groups, snakemake.output.gallery_groups)
log_done(snakemake.output)
