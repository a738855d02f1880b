from encoderlens.logs import log_done, log_to

log_to(snakemake.log[0])

import pandas as pd

from encoderlens.report.figures import save_plot
from encoderlens.report.figures_geo import (cosine_distance_panels, plot_cosine_distance, plot_gallery,
                                            plot_geoscore, plot_probe_accuracy)

settings = snakemake.params.figures
entries = [tuple(entry) for entry in settings["entries"]]


def labelled(paths, keys):
    return pd.concat([pd.read_parquet(path).assign(model=model, variant=variant)
                      for path, (model, variant) in zip(paths, keys)], ignore_index=True)


probes = pd.concat([pd.read_parquet(path).assign(model=model)
                    for path, model in zip(snakemake.input.probes, settings["models"])], ignore_index=True)
geometry = settings["geometry"]
panels = cosine_distance_panels(entries, snakemake.input.embeddings,
                                [pd.read_parquet(path) for path in snakemake.input.geometry_bins],
                                pd.read_parquet(snakemake.input.manifest), geometry["n_pairs"],
                                geometry["seed"], geometry["bins_km"])
plots = {
    "probes": plot_probe_accuracy(probes),
    "cosine": plot_cosine_distance(panels, settings["hexbin_gridsize"]),
    "geoscore": plot_geoscore(labelled(snakemake.input.predictions, entries)),
    "gallery": plot_gallery(pd.read_parquet(snakemake.input.groups),
                            labelled(snakemake.input.gallery, entries)),
}
for key, plot in plots.items():
    save_plot(plot, *(snakemake.output[f"{key}_{kind}"] for kind in ("png", "svg", "data", "caption")),
              dpi=settings["dpi"])
log_done(snakemake.output)
