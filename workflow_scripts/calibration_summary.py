from encoderlens.logs import log_done, log_to

log_to(snakemake.log[0])

import pandas as pd

from encoderlens.geo.calibration import calibration_summary, variant_metrics
from encoderlens.geo.job import read_features
from encoderlens.tables import write_table

feature = snakemake.params.feature
metrics = {}
for variant in ("frozen", "calibrated"):
    _, features = read_features(snakemake.input[f"{variant}_embeddings"], [feature])
    metrics[variant] = variant_metrics(pd.read_parquet(snakemake.input[f"{variant}_knn"]),
                                       pd.read_parquet(snakemake.input[f"{variant}_geometry"]),
                                       features[feature], feature)
write_table(calibration_summary(metrics["frozen"], metrics["calibrated"]).assign(features=feature),
            snakemake.output[0])
log_done(snakemake.output)
