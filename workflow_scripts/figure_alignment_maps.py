from encoderlens.logs import log_done, log_to

log_to(snakemake.log[0])

import pandas as pd

from encoderlens.report.figures import save_plot
from encoderlens.report.figures_heads import FEATURE_COLUMNS, plot_head_feature
from encoderlens.report.figures_overlays import (EXEMPLAR_INPUT_COLUMNS, exemplars, overlay_method,
                                                 plot_attention_overlays)

settings = snakemake.params.figures
threshold, layer_rule = settings["threshold"], settings["layer_rule"]
models = settings["models"]


def at_threshold(path, columns):
    # the per-feature tables of a six-model study hold millions of rows: read one threshold's
    return pd.read_parquet(path, columns=columns, filters=[("threshold", "==", float(threshold))])


features = pd.concat([at_threshold(path, FEATURE_COLUMNS) for path in snakemake.input.features],
                     ignore_index=True)
heads = plot_head_feature(features, threshold, layer_rule)

chosen = []
for path in snakemake.input.alignment:
    table = at_threshold(path, EXEMPLAR_INPUT_COLUMNS)
    method, layer = overlay_method(table, settings["overlay_methods"], layer_rule, threshold)
    chosen.append(exemplars(table, method, layer, threshold))
overlays = plot_attention_overlays(pd.concat(chosen, ignore_index=True),
                                   dict(zip(models, snakemake.input.attention)),
                                   pd.read_parquet(snakemake.input.manifest),
                                   pd.read_parquet(snakemake.input.annotations), threshold)

for key, plot in (("heads", heads), ("overlays", overlays)):
    save_plot(plot, *(snakemake.output[f"{key}_{kind}"] for kind in ("png", "svg", "data", "caption")),
              dpi=settings["dpi"])
log_done(snakemake.output)
