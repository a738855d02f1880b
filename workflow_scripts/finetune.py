from encoderlens.logs import log_done, log_to

log_to(snakemake.log[0])

from pathlib import Path

from encoderlens.finetune.job import run_finetune

settings = snakemake.params.settings
run_finetune(
    manifest_path=snakemake.input.manifest,
    model_folder=snakemake.input.model,
    family=settings["family"],
    strategy=snakemake.params.strategy,
    settings=settings,
    out_folder=Path(snakemake.output.history).parent,
    image_size=settings["image_size"],
    threads=snakemake.threads,
    device=settings["device"],
)
log_done(snakemake.output)
