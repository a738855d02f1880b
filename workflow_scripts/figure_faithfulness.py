from encoderlens.logs import log_done, log_to

log_to(snakemake.log[0])

import pandas as pd

from encoderlens.report.figures import save_plot
from encoderlens.report.figures_faithfulness import plot_plausibility_faithfulness

plot = plot_plausibility_faithfulness(pd.read_parquet(snakemake.input.plausibility))
save_plot(plot, *(snakemake.output[f"plausibility_{kind}"] for kind in ("png", "svg", "data", "caption")),
          dpi=snakemake.params.figures["dpi"])
log_done(snakemake.output)
