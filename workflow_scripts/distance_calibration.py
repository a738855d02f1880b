from encoderlens.logs import log_done, log_to

log_to(snakemake.log[0])

from pathlib import Path

from encoderlens.geo.job import calibrate

settings = snakemake.params.calibration
calibrate(
    manifest_path=snakemake.input.manifest,
    frozen_embeddings=snakemake.input.embeddings,
    model_folder=snakemake.input.model,
    family=snakemake.params.family,
    image_size=settings["image_size"],
    settings=settings,
    out_folder=Path(snakemake.output.history).parent,
    threads=snakemake.threads,
    device=settings["device"],
)
log_done(snakemake.output)
