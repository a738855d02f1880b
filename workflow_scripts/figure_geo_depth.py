from encoderlens.logs import log_done, log_to

log_to(snakemake.log[0])

import pandas as pd

from encoderlens.report.figures import save_plot
from encoderlens.report.figures_geo_depth import (plot_cka, plot_continent_forest, plot_failure_gallery,
                                                  plot_regional_world)

settings = snakemake.params.figures
regional = pd.read_parquet(snakemake.input.regional)
plots = {
    "world": plot_regional_world(regional),
    "continents": plot_continent_forest(regional),
    "cka": plot_cka(pd.read_parquet(snakemake.input.cka)),
    "failures": plot_failure_gallery(pd.read_parquet(snakemake.input.failures),
                                     pd.read_parquet(snakemake.input.manifest),
                                     dict(zip(settings["models"], snakemake.input.attention)),
                                     settings["features"], settings["method"]),
}
for key, plot in plots.items():
    save_plot(plot, *(snakemake.output[f"{key}_{kind}"] for kind in ("png", "svg", "data", "caption")),
              dpi=settings["dpi"])
log_done(snakemake.output)
