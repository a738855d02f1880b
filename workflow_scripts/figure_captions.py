from encoderlens.logs import log_done, log_to

log_to(snakemake.log[0])

import pandas as pd

from encoderlens.report.figures import save_plot
from encoderlens.report.figures_captions import every_caption_distribution, plot_caption_continents

every = every_caption_distribution(pd.read_parquet(snakemake.input.predictions),
                                   snakemake.params.figures["continent_scheme"])
plot = plot_caption_continents(pd.read_parquet(snakemake.input.distributions), every)
save_plot(plot, *(snakemake.output[f"continents_{kind}"] for kind in ("png", "svg", "data", "caption")),
          dpi=snakemake.params.figures["dpi"])
log_done(snakemake.output)
