from encoderlens.logs import log_done, log_to

log_to(snakemake.log[0])

import pandas as pd

from encoderlens.report.figures import save_plot
from encoderlens.report.figures_finetune import plot_delta_iou

settings = snakemake.params.figures
deltas = pd.concat([pd.read_parquet(path) for path in snakemake.input.deltas], ignore_index=True)
plot = plot_delta_iou(deltas, settings["threshold"], settings["overlay_methods"])
save_plot(plot, *(snakemake.output[f"delta_{kind}"] for kind in ("png", "svg", "data", "caption")),
          dpi=settings["dpi"])
log_done(snakemake.output)
