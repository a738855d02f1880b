from encoderlens.logs import log_done, log_to

log_to(snakemake.log[0])

import pandas as pd

from encoderlens.report.figures import save_plot
from encoderlens.report.figures_alignment import (plot_iou_by_layer, plot_leaderboard,
                                                  plot_threshold_sensitivity)

settings = snakemake.params.figures
summary = pd.read_parquet(snakemake.input.summary)
threshold, layer_rule, min_n = settings["threshold"], settings["layer_rule"], settings["min_n"]
plots = {
    "leaderboard": plot_leaderboard(summary, threshold, layer_rule, min_n),
    "layers": plot_iou_by_layer(summary, threshold, min_n),
    "thresholds": plot_threshold_sensitivity(summary, threshold, layer_rule, min_n),
}
for key, plot in plots.items():
    save_plot(plot, *(snakemake.output[f"{key}_{kind}"] for kind in ("png", "svg", "data", "caption")),
              dpi=settings["dpi"])
log_done(snakemake.output)
